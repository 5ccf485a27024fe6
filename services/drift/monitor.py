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
    panels: list[Panel]
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
        checks.append(Check("ks.clicked_score", stats.ks(rs, cs), cfg.ks_threshold))
        checks.append(Check("psi.clicked_score", stats.psi(rs, cs), cfg.psi_threshold))
        panels.append(Panel("model score of clicked (user, item)", list(rs), list(cs)))
    if ctx.embedder is not None and len(ref_pos) and len(cur_pos):
        re_ = ctx.embedder(list(ref_pos["item_id"]))
        ce = ctx.embedder(list(cur_pos["item_id"]))
        checks.append(Check("embedding.clicked_centroid_shift", stats.centroid_shift(re_, ce),
                            cfg.embedding_threshold))
    return checks


def compute_drift(ref: pd.DataFrame, cur: pd.DataFrame, ctx: DriftContext, cfg: DriftSettings) -> DriftResult:
    """Every statistic of ``cur`` (recent serving window) against ``ref`` (the training window)."""
    panels: list[Panel] = []
    checks = _feature_checks(ref, cur, ctx, cfg, panels)
    ref_ctr, cur_ctr = ctr(ref), ctr(cur)
    checks.append(Check("ctr_drop", stats.relative_drop(ref_ctr, cur_ctr), cfg.ctr_drop_threshold))
    checks += _model_checks(ref, cur, ctx, cfg, panels)
    counts = {"reference_events": len(ref), "current_events": len(cur),
              "reference_ctr_permille": round(1000 * ref_ctr), "current_ctr_permille": round(1000 * cur_ctr)}
    return DriftResult(checks, panels, counts)
