"""Off-policy evaluation of a candidate policy on the platform's impression log.

The log is replayed into the in-process online state (the worker's own transforms, ``funnel.replay``);
at each logged feed's time the candidate (the process's settings with an arm's overrides) computes the
feed it would have served, with its exploration distribution (``FeedResult.explore``), and the
funnel's feature rows of every item involved. Then:

- the reward model is the position-based click model (``models.click_model``) on those features,
  fitted on the logged slots' clicks with 2-fold cross-fitting (each half predicted by the model of
  the other half); its examination curve ``theta`` gives the position weights;
- position-based terms: a logged exploit item (shown with probability 1 at its slot) supports the
  candidate's examination mass on it wherever the candidate puts it; a logged exploration pick at one
  of S exploration slots with propensity mu supports it with ``in_feed = S * mu`` (every pool item can
  land in every exploration slot); an item the logging policy could not show has only the reward
  model (reported as ``support``, the share of the candidate's examination mass the log supports);
- per-slot terms as well (no position model: a logged slot counts only where the candidate shows the
  same item in the same slot).

Feeds served by interleaving (no distribution) and degraded fallback feeds are skipped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from core.events import ItemUpsert, UserUpsert
from core.experiment_config import ArmOverrides
from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.experiments import ModelResolver, PinnedSlot, arm_settings
from funnel.log import Catalog, EventLog
from funnel.modelset import ModelSlot
from funnel.pipeline import Pipeline
from funnel.replay import Replay
from models.click_model import PositionBasedModel
from models.content import ContentConfig, ContentEncoder, item_text
from models.ope import clipped_share, estimate_all, per_slot_terms, position_based_terms
from services.experiments.analysis import finite
from services.experiments.source import LogRecords

log = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]
FOLDS = 2
FIDELITY_EVERY = 20  # every 20th logged feed is re-served by the replay and compared
MAX_WEIGHT = 20.0  # SWITCH DR: a logged slot weighted above this is left to the reward model


@dataclass
class Candidate:
    """A policy to evaluate: the process's settings with these arm overrides."""

    name: str
    overrides: ArmOverrides = field(default_factory=ArmOverrides)


@dataclass
class Round:
    """One logged feed joined with the candidate's feed at the same moment."""

    user: str
    now: float
    items: list[str]
    positions: list[int]
    propensity: list[float]
    explore: list[bool]
    clicks: list[bool]
    target: list[dict[str, float]]  # candidate slot k -> {item: P(item at k)}
    rows: dict[str, int]  # item -> row of the feature matrix


@dataclass
class Gathered:
    """Per candidate, its rounds; the feature rows (shared: one matrix per logged feed)."""

    rounds: dict[str, list[Round]] = field(default_factory=dict)
    features: list[F64] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=lambda: {"interleaved": 0, "degraded": 0})
    replayed: list[bool] = field(default_factory=list)  # sampled: the replay re-served the logged feed


def catalog_of(records: LogRecords, use_model: bool) -> Catalog:
    items = [ItemUpsert.model_validate(r) for r in records.items]
    users = [UserUpsert.model_validate(r) for r in records.users]
    if not items:
        return Catalog([], None, users)
    enc = ContentEncoder(ContentConfig(use_model=use_model))
    return Catalog(items, enc.encode([item_text(it.title, it.text) for it in items],
                                     [list(it.categories) for it in items]), users)


def event_log(records: LogRecords) -> EventLog:
    from services.trainer.data import events_frame

    return EventLog.from_frame(events_frame(records.interactions))


def clicks_by_slot(records: LogRecords) -> set[tuple[str, int, str]]:
    return {(r["feed_id"], int(r["position"]), r["item_id"]) for r in records.interactions
            if r.get("type") == "click" and r.get("feed_id") is not None and r.get("position") is not None}


def _target(base: Pipeline, c: Candidate, resolver: ModelResolver | None) -> Pipeline:
    version = c.overrides.model_version
    if version and resolver is None:
        raise ValueError(f"policy {c.name!r} pins model version {version} but no model store is wired")
    models = PinnedSlot(base.models, version, resolver) if version and resolver else None
    return base.variant(arm_settings(base.settings, c.overrides.changed()), models, c.overrides.sources)


def gather(records: LogRecords, settings: Settings, candidates: Sequence[Candidate],
           models: ModelSlot | None = None, limit: int | None = None,
           resolver: ModelResolver | None = None) -> Gathered:
    """Replays the log once and joins each logged feed with every candidate's feed (see the module
    docstring). ``models``: what the replay serves with (and computes features with); ``resolver``
    loads a candidate's pinned model version."""
    events = event_log(records)
    store = MemoryOnline(settings)
    replay = Replay(events, catalog_of(records, settings.worker.content_model), store)
    base = Pipeline(settings, store, models or ModelSlot(), reader=store)
    targets = {c.name: _target(base, c, resolver) for c in candidates}
    clicked = clicks_by_slot(records)
    out = Gathered(rounds={name: [] for name in targets})
    for rec in sorted(records.impressions, key=lambda r: float(r["generated_at"]))[:limit]:
        if rec.get("teams") or rec.get("degraded"):
            out.skipped["interleaved" if rec.get("teams") else "degraded"] += 1
            continue
        now = float(rec["generated_at"])
        replay.advance(int(np.searchsorted(events.ts, now, side="left")), until_ts=now)
        _join(rec, now, base, targets, clicked, out)
        if not rec.get("experiments") and len(out.features) % FIDELITY_EVERY == 1:
            again = base.feed(rec["user_id"], n=len(rec["items"]), now=now).feed
            out.replayed.append([it.item_id for it in again.items] == list(rec["items"]))
    return out


def _join(rec: dict[str, Any], now: float, base: Pipeline, targets: dict[str, Pipeline],
          clicked: set[tuple[str, int, str]], out: Gathered) -> None:
    user, items = rec["user_id"], list(rec["items"])
    dists = {}
    for name, pipeline in targets.items():
        result = pipeline.feed(user, n=len(items), now=now)
        dists[name] = [result.explore.get(k) or {it.item_id: 1.0} for k, it in enumerate(result.feed.items)]
    involved = list(dict.fromkeys([*items, *(i for d in dists.values() for slot in d for i in slot)]))
    start = sum(len(f) for f in out.features)
    out.features.append(np.asarray(base.rank_inputs(user, now, involved).matrix, np.float64))
    rows = {i: start + j for j, i in enumerate(involved)}
    positions = [int(p) for p in rec["positions"]]
    shown = [(rec["feed_id"], p, i) in clicked for i, p in zip(items, positions, strict=True)]
    for name, dist in dists.items():
        out.rounds[name].append(Round(user, now, items, positions, [float(p) for p in rec["propensities"]],
                                      [bool(e) for e in rec["explore"]], shown, dist, rows))


def fit_reward_model(g: Gathered, n_positions: int) -> tuple[PositionBasedModel, list[PositionBasedModel]]:
    """The full-data model (its theta weights the positions) and one model per fold for the
    cross-fitted predictions (fold f is predicted by the model fitted on the other rounds). It is
    fitted on the logged slots only, so it is the same for every candidate."""
    x = np.vstack(g.features) if g.features else np.zeros((0, 1))
    logged = next(iter(g.rounds.values()), [])
    rows = [(f, r.rows[i], p, c) for f, r in enumerate(logged)
            for i, p, c in zip(r.items, r.positions, r.clicks, strict=True)]
    idx = np.array([row for _, row, _, _ in rows], np.int64)
    fold = np.array([f % FOLDS for f, _, _, _ in rows])
    pos = np.array([p for _, _, p, _ in rows])
    clicks = np.array([c for _, _, _, c in rows], np.float64)
    full = PositionBasedModel().fit(x[idx], pos, clicks, n_positions)
    per_fold = [PositionBasedModel().fit(x[idx[fold != k]], pos[fold != k], clicks[fold != k], n_positions)
                for k in range(FOLDS)]
    return full, per_fold


@dataclass
class Terms:
    reward: F64
    mask: npt.NDArray[np.bool_]
    theta_logged: F64
    in_feed: F64
    target_exam: F64
    target_theta: F64
    logging: F64
    target_same: F64
    q: F64
    dm: F64
    slots: F64


def _mass(r: Round, theta: F64) -> dict[str, float]:
    """The candidate's examination mass per item: sum over its slots k of P(item at k) * theta_k."""
    mass: dict[str, float] = {}
    for k, dist in enumerate(r.target):
        for item, p in dist.items():
            mass[item] = mass.get(item, 0.0) + p * float(theta[k])
    return mass


def build_terms(g: Gathered, name: str, full: PositionBasedModel,
                folds: Sequence[PositionBasedModel]) -> Terms:
    x = np.vstack(g.features) if g.features else np.zeros((0, 1))
    rounds = g.rounds[name]
    shape = (len(rounds), max((len(r.items) for r in rounds), default=0))
    a = {name: np.zeros(shape) for name in ("reward", "theta", "in_feed", "exam", "logging", "same", "q")}
    mask = np.zeros(shape, bool)
    dm, target_theta, slots = (np.zeros(len(rounds)) for _ in range(3))
    for f, r in enumerate(rounds):
        rel = dict(zip(r.rows, folds[f % FOLDS].relevance(x[list(r.rows.values())]).tolist(), strict=True))
        theta = full.examination(np.arange(len(r.target)))
        mass = _mass(r, theta)
        dm[f] = sum(m * rel[i] for i, m in mass.items())
        target_theta[f], slots[f] = float(theta.sum()), len(r.target)
        n_explore = max(sum(r.explore), 1)
        for j, (item, pos, prop, exp, c) in enumerate(zip(r.items, r.positions, r.propensity, r.explore,
                                                          r.clicks, strict=True)):
            th = float(full.examination([pos])[0])
            mask[f, j] = True
            a["reward"][f, j], a["theta"][f, j], a["logging"][f, j] = float(c), th, prop
            a["in_feed"][f, j] = n_explore * prop if exp else 1.0
            a["exam"][f, j] = mass.get(item, 0.0)
            a["same"][f, j] = r.target[pos].get(item, 0.0) if pos < len(r.target) else 0.0
            a["q"][f, j] = th * rel[item]
    return Terms(a["reward"], mask, a["theta"], a["in_feed"], a["exam"], target_theta, a["logging"],
                 a["same"], a["q"], dm, slots)


def estimates(t: Terms, max_weight: float = MAX_WEIGHT) -> dict[str, Any]:
    """IPS, SNIPS and DR with both weightings (``dr``: SWITCH DR, slots weighted above ``max_weight``
    left to the reward model; ``dr_uncapped`` beside it), the reward model alone (direct method), the
    share of logged slots the cap left out, and the support: the share of the candidate's
    examination mass the log can see, estimated by the position-based control variate (its
    expectation is 1 under full support)."""
    pbm = position_based_terms(t.reward, t.theta_logged, t.in_feed, t.target_exam, t.target_theta, t.q,
                               t.dm, t.mask, t.slots)
    slot = per_slot_terms(t.reward, t.logging, t.target_same, t.q, t.dm, t.mask, t.slots)
    total = float(t.slots.sum())
    return {"position_based": {k: v.as_dict() for k, v in estimate_all(pbm, max_weight).items()},
            "per_slot": {k: v.as_dict() for k, v in estimate_all(slot, max_weight).items()},
            "direct_method": float(t.dm.sum() / total) if total else float("nan"),
            "max_weight": max_weight, "capped_share": clipped_share(pbm, max_weight),
            "support": float(pbm.cv.sum() / max(float(t.target_theta.sum()), 1e-12))}


def evaluate(records: LogRecords, settings: Settings, candidates: Sequence[Candidate],
             models: ModelSlot | None = None, limit: int | None = None,
             resolver: ModelResolver | None = None) -> dict[str, Any]:
    """The JSON report of ``streamrec ope`` for the platform's log: one entry per candidate."""
    return report(gather(records, settings, candidates, models, limit, resolver), candidates)


def report(g: Gathered, candidates: Sequence[Candidate]) -> dict[str, Any]:
    logged = next(iter(g.rounds.values()), [])
    if not logged:
        raise ValueError("the log holds no evaluable feeds (no impressions, or all interleaved or degraded)")
    full, folds = fit_reward_model(g, max(max(r.positions) for r in logged) + 1)
    slots = sum(len(r.items) for r in logged)
    clicks = sum(sum(r.clicks) for r in logged)
    replayed = float(np.mean(g.replayed)) if g.replayed else None
    out: dict[str, Any] = {"log": {"feeds": len(logged), "slots": slots, "skipped": g.skipped,
                                   "logging_ctr": clicks / max(slots, 1), "replay_fidelity": replayed},
                           "reward_model": {"theta": full.theta_.round(4).tolist(),
                                            "features": int(full.coef_.size)}, "policies": {}}
    for c in candidates:
        out["policies"][c.name] = {"overrides": c.overrides.changed(),
                                   "estimates": estimates(build_terms(g, c.name, full, folds))}
    return finite(out)
