"""``streamrec eval``: the served funnel, trained by the training job, scored at each test user's time.

For one split (``models.data``: leave-one-out, strict global time split, seeded random) and one seed:
1. the training events (train + validation) become an event log, the items a catalog with content
   vectors from the worker's encoder;
2. :func:`funnel.training.train` trains the two-tower, the index and the ranker: the same job as
   ``streamrec train``;
3. the log is replayed into the in-process store (the worker's transforms), and when the replay
   reaches a test user's test time, that user gets the feed the API would serve them then
   (``Pipeline.feed`` at that clock): 50 items, re-ranking and exploration slots included. The state
   holds exactly the training events before that time (no held-out event of anyone, nothing later), as
   a live state would; items exist from their first interaction in the dataset. What differs between
   the protocols is what the models were trained on: leave-one-out and random let the two-tower and the
   ranker learn from other users' later events, the global split does not (its log ends at the cut).
   The random split holds out an event from the middle of a history, so there every test user is
   served at the end of the log, with every training event applied (what the baselines see too), and
   the ranker learns from groups built the same way (``GroupCollector.collect_held_out``);
4. the baselines (Pop, ItemKNN, co-visitation) fit on the same train + validation interactions and
   rank every item, seen items excluded; each candidate source alone is scored as an ablation.
Metrics are computed over the ranked lists (``models.metrics.evaluate_lists``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from core.events import ItemUpsert
from core.online import F32
from core.settings import Settings
from funnel.log import Catalog, EventLog
from funnel.modelset import ModelSlot, one_thread
from funnel.pipeline import Pipeline, RankInputs
from funnel.replay import Replay
from funnel.retrieval import SOURCES
from funnel.scoring import HEURISTIC, model_heads
from funnel.training import StoreFactory, TrainConfig, Trained, train
from models.baselines import CoVisit, ItemKNN, Pop
from models.data import Interactions, Split
from models.metrics import evaluate_lists

log = logging.getLogger(__name__)
LIST_N = 50
ABLATION_USERS = 2000  # per-source ablations score a seeded sample of test users (all of ml-100k's)
IntArray = npt.NDArray[np.int64]


@dataclass
class RunResult:
    """One split x seed: metric means, per-user NDCG (for paired comparisons), and timings."""

    metrics: dict[str, float]
    ndcg: npt.NDArray[np.float64]
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    baseline_ndcg: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    ablations: dict[str, dict[str, float]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def training_log(data: Interactions, split: Split, like_threshold: float | None) -> EventLog:
    """Train + validation events of every user, as interactions (ratings at or above the threshold
    are likes, the rest clicks: every rating is an implicit positive)."""
    users, items, ts, w = [], [], [], []
    for u in range(data.n_users):
        seq, times, weights = split.history(u)
        users += [data.user_ids[u]] * len(seq)
        items += [data.item_ids[i] for i in seq]
        ts.append(times)
        w.append(weights)
    times, weights = np.concatenate(ts) if ts else np.zeros(0), np.concatenate(w) if w else np.zeros(0)
    graded = like_threshold if weights.size and np.ptp(weights) > 0 else None
    return EventLog.from_ratings(users, items, times, weights, graded, prefix="ev")


def catalog(data: Interactions, content: F32 | None) -> Catalog:
    """Every item, created (and upserted) at its first interaction in the dataset."""
    first = np.full(data.n_items, np.inf)
    np.minimum.at(first, data.items, data.timestamps)
    texts = data.item_text or data.item_ids
    cats = data.item_categories or [[] for _ in data.item_ids]
    items = [ItemUpsert.model_construct(item_id=i, title=str(texts[j]), text="", categories=list(cats[j]),
                                        attributes={}, created_at=float(first[j]), active=True,
                                        timestamp=float(first[j]), schema_version=1)
             for j, i in enumerate(data.item_ids)]
    return Catalog(items, content)


def _serve(data: Interactions, split: Split, replay: Replay, pipeline: Pipeline, users: IntArray,
           sampled: set[int]) -> tuple[IntArray, dict[str, IntArray]]:
    """The served feed of every test user at their test time, and for the ``sampled`` rows each
    source's own list."""
    code = {iid: j for j, iid in enumerate(data.item_ids)}
    lists = np.full((len(users), LIST_N), -1, np.int64)
    sources = {s: np.full((len(users), LIST_N), -1, np.int64) for s in (*SOURCES, "ranker", "heuristic")}
    order = np.argsort(split.test_ts[users], kind="stable")
    at_end = split.protocol == "random"  # served with the whole log but the held-out events
    if at_end:
        replay.advance(len(replay.log), until_ts=float("inf"))
    end = float(replay.log.ts[-1]) if len(replay.log) else 0.0
    for row, u in enumerate(users[order]):
        ts = end if at_end else float(split.test_ts[u])
        if not at_end:
            replay.advance(int(np.searchsorted(replay.log.ts, ts, "right")), until_ts=ts)
        user = data.user_ids[int(u)]
        feed = pipeline.feed(user, n=LIST_N, now=ts)
        ids = [code[it.item_id] for it in feed.feed.items if it.item_id in code][:LIST_N]
        lists[row, :len(ids)] = ids
        if row in sampled:  # the inputs the feed was ranked on (a degraded feed has none: read again)
            ri = feed.inputs or pipeline.rank_inputs(user, ts)
            _ablations(pipeline, ri, user, code, sources, row)
    return lists, sources


def _ablations(pipeline: Pipeline, ri: RankInputs, user: str, code: dict[str, int],
               out: dict[str, IntArray], row: int) -> None:
    seen = pipeline.state.user(user).seen
    for src in SOURCES:
        ids = [code[i] for i, _ in ri.cands.raw.get(src, []) if i in code and i not in seen][:LIST_N]
        out[src][row, :len(ids)] = ids
    ranker = pipeline.models.current.ranker
    for name, scorer in (("ranker", ranker), ("heuristic", HEURISTIC)):
        if scorer is None or not ri.item_ids:
            continue
        score = model_heads(scorer, ri.matrix)["click"]
        top = [code[ri.item_ids[j]] for j in np.argsort(-score, kind="stable")[:LIST_N]]
        out[name][row, :len(top)] = top


def _baselines(data: Interactions, split: Split, users: IntArray, item_pop: npt.NDArray[np.float64],
               seed: int) -> tuple[dict[str, dict[str, float]], dict[str, npt.NDArray[np.float64]]]:
    fit = split.fit_sequences(validation=True)
    histories = [split.history(int(u))[0] for u in users]
    order = np.argsort(split.test_ts[users], kind="stable")
    targets = split.test_item[users][order]
    means, per_user = {}, {}
    for name, model in (("pop", Pop()), ("itemknn", ItemKNN()), ("covisit", CoVisit())):
        model.fit(fit, data.n_items)
        lists = model.recommend([histories[i] for i in order], LIST_N, seed=seed)
        ev = evaluate_lists(lists, targets, item_pop, data.n_users)
        means[name], per_user[name] = ev.means(), ev.per_user["ndcg@10"]
    return means, per_user


def run_once(data: Interactions, split: Split, content: F32 | None, settings: Settings, cfg: TrainConfig,
             new_store: StoreFactory, seed: int, like_threshold: float | None = 4.0) -> RunResult:
    """Train, serve and score one split with one seed (users in test-time order throughout)."""
    started = time.monotonic()
    run_log, cat = training_log(data, split, like_threshold), catalog(data, content)
    trained = train(run_log, cat, settings, cfg.seeded(seed), new_store)
    replay = Replay(run_log, cat, new_store())
    pipeline = Pipeline(settings, replay.store, ModelSlot(trained.models()), reader=replay.store)  # type: ignore[arg-type]
    users = split.eval_users()
    rows = np.sort(np.random.default_rng(seed).permutation(len(users))[:ABLATION_USERS])
    with one_thread():
        lists, sources = _serve(data, split, replay, pipeline, users, {int(r) for r in rows})
    targets = split.test_item[users][np.argsort(split.test_ts[users], kind="stable")]
    item_pop = _item_pop(split, data.n_items)
    ev = evaluate_lists(lists, targets, item_pop, data.n_users)
    result = RunResult(ev.means(), ev.per_user["ndcg@10"], training=_training_summary(trained))
    result.baselines, result.baseline_ndcg = _baselines(data, split, users, item_pop, seed)
    result.ablations = {name: evaluate_lists(lst[rows], targets[rows], item_pop, data.n_users).means()
                        for name, lst in sources.items() if (lst[rows] >= 0).any()}
    result.seconds = time.monotonic() - started
    return result


def _item_pop(split: Split, n_items: int) -> npt.NDArray[np.float64]:
    seqs = [s for s in split.fit_sequences(validation=True) if len(s)]
    flat = np.concatenate([np.unique(s) for s in seqs]) if seqs else np.zeros(0, np.int64)
    return np.bincount(flat, minlength=n_items).astype(np.float64)


def _training_summary(trained: Trained) -> dict[str, Any]:
    return {**trained.metrics, "ranker": trained.ranker is not None, "skipped": trained.skipped}
