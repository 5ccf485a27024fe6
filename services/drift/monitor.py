"""Drift checks of recent serving data against the training reference.

``compute_drift`` is pure (two event windows in, statistics and reasons out). ``run_drift`` is the
job: reads both windows from the archive, stores a DriftReport (+ HTML), exports Prometheus gauges and,
above a threshold, calls ``on_drift`` (the trainer trigger) and records what it started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from core.settings import DriftSettings
from services.drift import stats
from services.drift.report import Panel
from services.trainer.data import ctr

log = logging.getLogger(__name__)

Scorer = Callable[[Sequence[str], Sequence[str]], npt.NDArray[np.float32]]
Embedder = Callable[[Sequence[str]], npt.NDArray[np.float32]]
_MAX_SAMPLE = 20_000
MIN_USER_EVENTS = 3
MAX_USERS = 5_000


@dataclass
class DriftContext:
    """What the checks may use besides the events: item categories, the active model's scorer
    (user_ids, item_ids) -> scores, and an item embedder (item_ids) -> [n, d]."""

    categories: dict[str, str] = field(default_factory=dict)
    scorer: Scorer | None = None
    embedder: Embedder | None = None


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float

    @property
    def crossed(self) -> bool:
        return self.value > self.threshold


@dataclass
class DriftResult:
    checks: list[Check]
    panels: list[Panel] = field(repr=False)
    counts: dict[str, int]

    @property
    def drifted(self) -> bool:
        return any(c.crossed for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name} = {c.value:.3f} > {c.threshold:.3f}" for c in self.checks if c.crossed]

    @property
    def metrics(self) -> dict[str, Any]:
        return {**{c.name: round(c.value, 6) for c in self.checks}, **self.counts}


def _sample(df: pd.DataFrame, n: int = _MAX_SAMPLE, seed: int = 0) -> pd.DataFrame:
    return df if len(df) <= n else df.sample(n=n, random_state=seed)


def _shares(values: Sequence[str]) -> dict[str, float]:
    s = pd.Series(list(values), dtype=object).value_counts(normalize=True)
    return {str(k): float(v) for k, v in s.items()}


def _feature_checks(ref: pd.DataFrame, cur: pd.DataFrame, ctx: DriftContext, cfg: DriftSettings,
                    panels: list[Panel]) -> list[Check]:
    checks = []
    ref_pos, cur_pos = ref[ref["positive"]], cur[cur["positive"]]
    if ctx.categories:
        rc = [ctx.categories.get(i, "") for i in ref_pos["item_id"]]
        cc = [ctx.categories.get(i, "") for i in cur_pos["item_id"]]
        checks.append(Check("psi.clicked_category", stats.categorical_psi(rc, cc), cfg.psi_threshold))
        panels.append(Panel("clicked item category share", _shares(rc), _shares(cc)))
    rd, cd = list(ref["device"]), list(cur["device"])
    checks.append(Check("psi.device", stats.categorical_psi(rd, cd), cfg.psi_threshold))
    pop = ref["item_id"].value_counts()
    rp = np.log1p(ref_pos["item_id"].map(pop).fillna(0).to_numpy(dtype=float))
    cp = np.log1p(cur_pos["item_id"].map(pop).fillna(0).to_numpy(dtype=float))
    checks.append(Check("psi.clicked_item_popularity", stats.psi(rp, cp), cfg.psi_threshold))
    panels.append(Panel("log popularity of clicked items", list(rp), list(cp)))
    rdw = ref.loc[ref["type"] == "dwell", "value"].to_numpy(dtype=float)
    cdw = cur.loc[cur["type"] == "dwell", "value"].to_numpy(dtype=float)
    checks.append(Check("ks.dwell_seconds", stats.ks(rdw, cdw), cfg.ks_threshold))
    return checks


def _model_checks(ref: pd.DataFrame, cur: pd.DataFrame, ctx: DriftContext, cfg: DriftSettings,
                  panels: list[Panel]) -> list[Check]:
    checks = []
    ref_pos, cur_pos = _sample(ref[ref["positive"]]), _sample(cur[cur["positive"]])
    if ctx.scorer is not None and len(ref_pos) and len(cur_pos):
        rs = np.asarray(ctx.scorer(list(ref_pos["user_id"]), list(ref_pos["item_id"])), dtype=float)
        cs = np.asarray(ctx.scorer(list(cur_pos["user_id"]), list(cur_pos["item_id"])), dtype=float)
        checks.append(Check("ks.clicked_score_drop", stats.ks_lower(rs, cs), cfg.ks_threshold))
        panels.append(Panel("model score of clicked (user, item)", list(rs), list(cs)))
    if ctx.embedder is not None:
        shift = _user_centroid_shift(ref[ref["positive"]], cur[cur["positive"]], ctx.embedder)
        if shift is not None:
            checks.append(Check("embedding.user_centroid_shift", shift, cfg.embedding_threshold))
    return checks


def _per_user_vectors(pos: pd.DataFrame, embedder: Embedder, users: set[str]) -> dict[str, np.ndarray]:
    pos = pos[pos["user_id"].isin(users)]
    out = {}
    for user, items in pos.groupby("user_id")["item_id"]:
        vecs = np.asarray(embedder(list(items)), dtype=np.float64)
        if len(vecs):
            out[str(user)] = vecs
    return out


def _user_centroid_shift(ref_pos: pd.DataFrame, cur_pos: pd.DataFrame, embedder: Embedder) -> float | None:
    """Per user, where their engagements sit in embedding space now vs in the reference (users with
    at least MIN_USER_EVENTS positives in both windows, at most MAX_USERS of them)."""
    rc, cc = ref_pos["user_id"].value_counts(), cur_pos["user_id"].value_counts()
    both = sorted(set(rc[rc >= MIN_USER_EVENTS].index) & set(cc[cc >= MIN_USER_EVENTS].index))[:MAX_USERS]
    if not both:
        return None
    return stats.mean_pairwise_shift(_per_user_vectors(ref_pos, embedder, set(both)),
                                     _per_user_vectors(cur_pos, embedder, set(both)))


def _ctr_check(ref: pd.DataFrame, cur: pd.DataFrame, cfg: DriftSettings) -> tuple[Check, float, float]:
    """Served-feed CTR when both windows have served impressions (same exposure), else overall."""
    served_ref, served_cur = ref[ref["feed_id"].notna()], cur[cur["feed_id"].notna()]
    if ctr(served_ref) > 0 and len(served_cur):
        ref_ctr, cur_ctr, name = ctr(served_ref), ctr(served_cur), "ctr_drop.served"
    else:
        ref_ctr, cur_ctr, name = ctr(ref), ctr(cur), "ctr_drop"
    return Check(name, stats.relative_drop(ref_ctr, cur_ctr), cfg.ctr_drop_threshold), ref_ctr, cur_ctr


def compute_drift(ref: pd.DataFrame, cur: pd.DataFrame, ctx: DriftContext, cfg: DriftSettings) -> DriftResult:
    """Every statistic of ``cur`` (recent serving window) against ``ref`` (the training window)."""
    panels: list[Panel] = []
    checks = _feature_checks(ref, cur, ctx, cfg, panels)
    ctr_check, ref_ctr, cur_ctr = _ctr_check(ref, cur, cfg)
    checks.append(ctr_check)
    checks += _model_checks(ref, cur, ctx, cfg, panels)
    counts = {"reference_events": len(ref), "current_events": len(cur),
              "reference_ctr_permille": round(1000 * ref_ctr), "current_ctr_permille": round(1000 * cur_ctr)}
    return DriftResult(checks, panels, counts)
