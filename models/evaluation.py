"""The offline evaluation harness: temporal leave-one-out, full ranking, our pipeline vs baselines.

Protocol (``models.data.leave_one_out``): per user, a stable time sort; last = test, second-last =
validation, rest = train. Every interaction is an implicit positive. Each test target is ranked
against ALL items except the items the user already interacted with before it (train + validation).

Our pipeline, fitted on train only:
1. two-tower retrieval (sequence-aware user tower, ID + content item tower), early-stopped on the
   validation step;
2. candidates = two-tower top-n  U  co-visitation top-n  U  recently-popular top-n;
3. the multi-task ranker, trained on the validation step (history = train, label = validation item,
   deep label = rating >= ``like_threshold``) plus ``ranker_extra_steps`` earlier steps inside train
   (the two-tower then trains without those last items, so its scores stay unbiased), re-scores
   the candidates for the test step;
4. the re-rank stage's fresh slot: slot 10 goes to the best never-trained item by two-tower
   (content) score when it is within the user's two-tower top ``fresh_slot_max_rank``.
Items outside the candidate set keep their two-tower order below every candidate (full ranking).

``run_evaluation(log, EvalConfig()) -> dict`` returns the JSON document of ``streamrec eval``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from models.baselines import CoVisit, ItemKNN, Pop
from models.content import ContentConfig, ContentEncoder
from models.data import Interactions, Split, leave_one_out
from models.eval_features import FEATURES, CandidateConfig, Candidates, FeatureBuilder, Phase
from models.metrics import all_metrics, rank_metrics, target_ranks
from models.ranker import RankerConfig
from models.ranker_serving import RankerServing
from models.ranker_train import RankerTrainConfig, RankingData, train_ranker
from models.two_tower import TwoTowerConfig, TwoTowerModel
from models.two_tower_train import TwoTowerTrainConfig, pad_histories, train_two_tower

log = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class EvalConfig:
    two_tower: dict[str, Any] = field(default_factory=lambda: {"n_layers": 1, "max_len": 20, "dropout": 0.1})
    two_tower_train: TwoTowerTrainConfig = TwoTowerTrainConfig(batch_size=64, lr=2e-3, eval_every=1)
    candidates: CandidateConfig = CandidateConfig()
    ranker_train: RankerTrainConfig = RankerTrainConfig()
    head_weights: dict[str, float] = field(default_factory=lambda: {"click": 1.0, "deep": 0.5})
    like_threshold: float = 4.0
    use_content_model: bool = True
    seed: int = 0
    small_user_max_train: int = 5
    fresh_slot_max_rank: int = 50
    ranker_extra_steps: int = 1


def run_evaluation(log_: Interactions, cfg: EvalConfig) -> dict[str, Any]:
    split = leave_one_out(log_)
    users = np.flatnonzero(split.test_item >= 0)
    valid, test = _phases(split, users)
    item_pop = np.bincount(np.concatenate(split.train_seq), minlength=log_.n_items).astype(np.float64)
    baselines = {name: _eval_scores(model.fit(split.train_seq, log_.n_items).score(test.histories), test,
                                    item_pop, log_.n_users)
                 for name, model in (("pop", Pop()), ("itemknn", ItemKNN()), ("covisit", CoVisit()))}
    start = time.monotonic()
    scores, ablations = _pipeline(log_, split, valid, test, cfg)
    train_seconds = time.monotonic() - start
    metrics = _eval_scores(scores, test, item_pop, log_.n_users)
    return {"metrics": metrics, "baselines": baselines, "ablations": ablations,
            "slices": _slices(scores, test, split, users, cfg),
            "train_seconds": train_seconds, "protocol": _protocol(log_, users)}


def _phases(split: Split, users: IntArray) -> tuple[Phase, Phase]:
    mean_rating = np.array([np.mean(split.train_weight[u]) if len(split.train_weight[u]) else 0.0
                            for u in users], np.float32)
    hist_v = [split.train_seq[u] for u in users]
    valid = Phase(hist_v, np.array([split.train_ts[u][-1] for u in users]), split.valid_item[users],
                  mean_rating, split.valid_weight[users])
    hist_t = [np.append(split.train_seq[u], split.valid_item[u]) for u in users]
    return valid, Phase(hist_t, split.valid_ts[users], split.test_item[users], mean_rating,
                        split.test_weight[users])


def _eval_scores(scores: F32, phase: Phase, item_pop: npt.NDArray[np.float64],
                 n_users: int) -> dict[str, float]:
    masked = scores.astype(np.float64)
    for u, h in enumerate(phase.histories):
        masked[u, h] = -np.inf
    return all_metrics(masked, phase.targets, item_pop, n_users)


def _content(log_: Interactions, cfg: EvalConfig) -> tuple[F32 | None, str]:
    if not log_.item_text:
        return None, "none"
    enc = ContentEncoder(ContentConfig(use_model=cfg.use_content_model))
    return enc.encode(log_.item_text, log_.item_categories), enc.backend


def _pipeline(log_: Interactions, split: Split, valid: Phase, test: Phase,
              cfg: EvalConfig) -> tuple[F32, dict[str, Any]]:
    content, backend = _content(log_, cfg)
    n_items = log_.n_items
    tt_cfg = TwoTowerConfig(n_items=n_items, content_dim=0 if content is None else content.shape[1],
                            **cfg.two_tower)
    item_pop = np.bincount(np.concatenate(split.train_seq), minlength=n_items).astype(np.float64)

    def validate(model: TwoTowerModel) -> float:
        return _eval_scores(_tt_scores(model, valid.histories), valid, item_pop, 1)["ndcg@10"]

    inner = [_inner_step(split, k) for k in range(1, cfg.ranker_extra_steps + 1)]
    tt_train = inner[-1][0].train_seq if inner else split.train_seq
    model = train_two_tower(tt_train, n_items, content, tt_cfg, cfg.two_tower_train, validate)
    builder = FeatureBuilder(split, n_items, content, cfg.candidates)
    steps = [(FeatureBuilder(s, n_items, content, cfg.candidates), p) for s, p in inner] + [(builder, valid)]
    ranker = _fit_ranker([_ranking_data(b.build(p, _tt_scores(model, p.histories)), p, cfg)
                          for b, p in steps], cfg)
    tt_test = _tt_scores(model, test.histories)
    cands = builder.build(test, tt_test)
    scores = _fresh_slot(_rerank(ranker, cands, tt_test), tt_test, test, split, cfg.fresh_slot_max_rank)
    ablations = {"two_tower": _eval_scores(tt_test, test, item_pop, log_.n_users),
                 "covisit_bidirectional": _eval_scores(builder.covisit.score(test.histories), test,
                                                       item_pop, log_.n_users),
                 "candidate_recall": _candidate_recall(cands, test.targets), "content_backend": backend}
    return scores, ablations


def _tt_scores(model: TwoTowerModel, histories: list[IntArray]) -> F32:
    with torch.inference_mode():
        users = model.user_vectors(pad_histories(histories, model.cfg.max_len))
        items = model.item_vectors(torch.arange(1, model.cfg.n_items + 1))
        return (users @ items.T).numpy().astype(np.float32)


def _inner_step(split: Split, k: int) -> tuple[Split, Phase]:
    """Extra ranker training step inside train: the k-th last training item is the target, the
    items before it are the history, the statistics come from those items only (no leakage)."""
    seqs = [s[:-k] if len(s) > k else s[:0] for s in split.train_seq]
    inner = replace(split, train_seq=seqs, train_ts=[t[:len(s)] for t, s in zip(split.train_ts, seqs,
                                                                                   strict=True)],
                    train_weight=[w[:len(s)] for w, s in zip(split.train_weight, seqs, strict=True)])
    users = np.flatnonzero(split.test_item >= 0)
    ok = np.array([len(split.train_seq[u]) > k for u in users], bool)
    sel = users[ok]
    phase = Phase([seqs[u] for u in sel], np.array([split.train_ts[u][-k - 1] for u in sel]),
                  np.array([split.train_seq[u][-k] for u in sel], np.int64),
                  np.array([np.mean(inner.train_weight[u]) for u in sel], np.float32),
                  np.array([split.train_weight[u][-k] for u in sel]))
    return inner, phase


def _ranking_data(cands: Candidates, phase: Phase, cfg: EvalConfig) -> RankingData:
    click = (cands.items == phase.targets[:, None]) & cands.mask
    return RankingData(cands.dense, np.zeros((*cands.items.shape, 0), np.int64),
                       {"click": click.astype(np.float32), "deep": _deep(click, phase, cfg)}, cands.mask)


def _fit_ranker(parts: list[RankingData], cfg: EvalConfig) -> RankerServing:
    width = max(p.mask.shape[1] for p in parts)

    def pad(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.pad(x, [(0, 0), (0, width - x.shape[1])] + [(0, 0)] * (x.ndim - 2))

    data = RankingData(np.concatenate([pad(p.dense) for p in parts]),
                       np.concatenate([pad(p.sparse) for p in parts]),
                       {h: np.concatenate([pad(p.labels[h]) for p in parts]) for h in parts[0].labels},
                       np.concatenate([pad(p.mask) for p in parts]))
    rcfg = RankerConfig(dense_features=FEATURES, head_weights=cfg.head_weights)
    return RankerServing(train_ranker(data, rcfg, cfg.ranker_train), head_weights=cfg.head_weights)


def _deep(click: npt.NDArray[np.bool_], phase: Phase, cfg: EvalConfig) -> F32:
    if np.ptp(phase.target_weight) == 0:  # implicit data: no deeper signal than the click itself
        return click.astype(np.float32)
    return (click & (phase.target_weight[:, None] >= cfg.like_threshold)).astype(np.float32)


def _rerank(ranker: RankerServing, cands: Candidates, tt_scores: F32) -> F32:
    u, k, f = cands.dense.shape
    out = ranker.score_arrays(np.ascontiguousarray(cands.dense.reshape(u * k, f)))["score"].reshape(u, k)
    scores = tt_scores - 10.0 - tt_scores.max()
    rows = np.repeat(np.arange(u)[:, None], k, axis=1)
    scores[rows[cands.mask], cands.items[cands.mask]] = out[cands.mask] + 1.0
    return scores


def _fresh_slot(scores: F32, tt_scores: F32, phase: Phase, split: Split, max_rank: int) -> F32:
    """Re-rank stage's fresh slot: the best never-trained item by two-tower score takes slot 10,
    when it ranks within ``max_rank`` of the user's two-tower list (cold start through content)."""
    trained = np.zeros(scores.shape[1], bool)
    trained[np.concatenate(split.train_seq)] = True
    cold = np.flatnonzero(~trained)
    if not len(cold) or max_rank <= 0 or scores.shape[1] < 10:
        return scores
    out, tt = scores.copy(), tt_scores.copy()
    for u, h in enumerate(phase.histories):
        out[u, h], tt[u, h] = -np.inf, -np.inf
    best = cold[np.argmax(tt[:, cold], axis=1)]
    rows = np.arange(len(out))
    ok = ((tt > tt[rows, best][:, None]).sum(1) < max_rank) & np.isfinite(tt[rows, best])
    top = -np.sort(-out, axis=1)[:, 8:10]
    place = ok & (out[rows, best] < top[:, 1])
    out[rows[place], best[place]] = (top[place, 0] + top[place, 1]) / 2
    return out


def _candidate_recall(cands: Candidates, targets: IntArray) -> float:
    return float(((cands.items == targets[:, None]) & cands.mask).any(1).mean())


def _slices(scores: F32, test: Phase, split: Split, users: IntArray, cfg: EvalConfig) -> dict[str, Any]:
    masked = scores.astype(np.float64)
    for u, h in enumerate(test.histories):
        masked[u, h] = -np.inf
    ranks = target_ranks(masked, test.targets)
    train_items = np.zeros(scores.shape[1], bool)
    train_items[np.concatenate(split.train_seq)] = True
    short = np.array([len(split.train_seq[u]) <= cfg.small_user_max_train for u in users])
    cold = ~train_items[test.targets]
    return {f"users_le_{cfg.small_user_max_train}_train": rank_metrics(ranks[short]),
            "items_unseen_in_train": rank_metrics(ranks[cold])}


def _protocol(log_: Interactions, users: IntArray) -> dict[str, Any]:
    return {"split": "temporal leave-one-out, stable sort (file order breaks ties)",
            "ranking": "full, excluding the user's earlier items", "interactions": len(log_),
            "pipeline": "two-tower + co-visitation + recent-popularity candidates, DCN-v2 ranker, "
                        "fresh slot (slot 10) for the best never-trained item by two-tower score",
            "users": log_.n_users, "items": log_.n_items, "eval_users": int(len(users))}
