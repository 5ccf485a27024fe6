"""Per-arm metrics of an experiment from the event stream, with always-valid tests.

From the impression log and the attributed interactions: per arm, impressions, CTR (clicks per shown
slot), deep-engagement rate (likes, purchases, shares, long dwells per shown slot), intra-list
diversity (mean pairwise 1 - Jaccard of the items' categories), latency (the funnel's time per feed)
and catalogue coverage (distinct items shown over the catalogue, on an equal number of users per
arm). The user is the unit: every ratio's standard error is the per-user delta method, coverage's a
bootstrap over users. Each treatment arm is compared with the control (the first arm) by the mSPRT
at ``looks`` points in time (the running minimum p-value and the intersected confidence sequence, so
reading the report every hour does not inflate false alarms), and the users per arm are checked
against the configured shares (sample-ratio mismatch). Interleave experiments report the per-user
preference between the two arms instead. A report declares at ``alpha`` family-wise (Bonferroni with
a primary metric): CTR, the metric an experiment is run for, is tested at ``alpha`` / 2 per treatment
arm, and the other metrics (guardrails: deep-engagement rate, diversity, latency, coverage) share
the other half, ``alpha`` / (2 x 4 x treatment arms) each; the confidence sequences it shows are at
each metric's level; the p-values are the raw always-valid ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.events import DEEP_TYPES, LONG_DWELL_SECONDS
from core.experiment_config import Experiment
from funnel.experiments import INTERLEAVED
from models.interleaving import preference
from models.sequential import Comparison, SequentialTest, Stat, compare, ratio, sample_ratio
from services.experiments.source import LogRecords

DEEP = frozenset(str(t) for t in DEEP_TYPES)
# metric -> (numerator, denominator, higher is better)
RATIOS = {"ctr": ("clicks", "imps", True), "deep_rate": ("deep", "imps", True),
          "diversity": ("ild", "feeds", True), "latency_ms": ("latency", "timed", False)}
BOOTSTRAP = 200
PRIMARY = "ctr"  # gets PRIMARY_SHARE of the report's alpha; the other metrics share the rest
PRIMARY_SHARE = 0.5


@dataclass
class Logged:
    """The log as two tables: ``feeds`` (one row per served feed) and ``slots`` (one per shown item,
    with its attributed click and deep engagement), and the catalogue size."""

    feeds: pd.DataFrame
    slots: pd.DataFrame
    catalog_size: int


def _ild(items: Sequence[str], cats: dict[str, frozenset[str]]) -> float:
    sets = [cats.get(i, frozenset({f"?{i}"})) for i in items]
    n = len(sets)
    if n < 2:
        return 0.0
    dist = [1.0 - len(a & b) / max(len(a | b), 1) for k, a in enumerate(sets) for b in sets[k + 1:]]
    return float(np.mean(dist))


def logged(records: LogRecords) -> Logged:
    cats = {r["item_id"]: frozenset(r.get("categories") or ()) for r in records.items}
    feeds = pd.DataFrame([{"feed_id": r["feed_id"], "user_id": r["user_id"], "ts": float(r["generated_at"]),
                           "experiments": dict(r.get("experiments") or {}), "latency": r.get("latency_ms"),
                           "ild": _ild(r["items"], cats), "n": len(r["items"])} for r in records.impressions],
                         columns=["feed_id", "user_id", "ts", "experiments", "latency", "ild", "n"])
    feeds = feeds.drop_duplicates("feed_id").sort_values("ts", kind="stable").reset_index(drop=True)
    rows = [(r["feed_id"], r["user_id"], float(r["generated_at"]), int(p), i, bool(e), float(pr), t)
            for r in records.impressions
            for i, p, e, pr, t in zip(r["items"], r["positions"], r["explore"], r["propensities"],
                                      r.get("teams") or [None] * len(r["items"]), strict=True)]
    slots = pd.DataFrame(rows, columns=["feed_id", "user_id", "ts", "position", "item_id", "explore",
                                        "propensity", "team"]).drop_duplicates(["feed_id", "position"])
    outcome = _outcomes(records.interactions)
    slots = slots.merge(outcome, on=["feed_id", "position", "item_id"], how="left")
    slots[["click", "deep"]] = slots[["click", "deep"]].astype("boolean").fillna(False).astype(bool)
    size = len(cats) or int(slots["item_id"].nunique())
    return Logged(feeds, slots.reset_index(drop=True), size)


def _outcomes(interactions: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in interactions:
        if r.get("feed_id") is None or r.get("position") is None:
            continue
        kind = str(r["type"])
        deep = kind in DEEP or (kind == "dwell" and float(r.get("value", 0.0)) >= LONG_DWELL_SECONDS)
        rows.append((r["feed_id"], int(r["position"]), r["item_id"], kind == "click", deep))
    df = pd.DataFrame(rows, columns=["feed_id", "position", "item_id", "click", "deep"])
    return df.groupby(["feed_id", "position", "item_id"], as_index=False)[["click", "deep"]].any()


def _labelled(lg: Logged, name: str, until: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    arm = lg.feeds["experiments"].map(lambda d: d.get(name))
    feeds = lg.feeds.assign(arm=arm)[arm.notna()]
    if until is not None:
        feeds = feeds[feeds["ts"] <= until]
    slots = lg.slots.merge(feeds[["feed_id", "arm"]], on="feed_id")
    return feeds, slots


def user_table(feeds: pd.DataFrame, slots: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, user): feeds, impressions, clicks, deep, summed diversity and latency."""
    latency = pd.to_numeric(feeds["latency"], errors="coerce")
    f = feeds.assign(timed=latency.notna(), latency=latency.fillna(0.0))
    per_feed = f.groupby(["arm", "user_id"]).agg(feeds=("feed_id", "size"), ild=("ild", "sum"),
                                                 latency=("latency", "sum"), timed=("timed", "sum"))
    per_slot = slots.groupby(["arm", "user_id"]).agg(imps=("item_id", "size"), clicks=("click", "sum"),
                                                     deep=("deep", "sum"))
    return per_feed.join(per_slot, how="left").fillna(0.0)


def arm_stats(users: pd.DataFrame, arm: str) -> dict[str, Stat]:
    t = users.loc[arm] if arm in users.index.get_level_values(0) else users.iloc[0:0]
    return {m: ratio(t[num], t[den]) for m, (num, den, _) in RATIOS.items()}


def coverage(slots: pd.DataFrame, arms: Sequence[str], catalog: int, seed: int = 0) -> dict[str, Stat]:
    """Distinct items shown / catalogue, each arm on the same number of users (the smallest arm's), with
    a bootstrap-over-users standard error."""
    rng = np.random.default_rng(seed)
    per_arm = {a: slots[slots["arm"] == a] for a in arms}
    n = min((s["user_id"].nunique() for s in per_arm.values()), default=0)
    out = {}
    for a, s in per_arm.items():
        users = np.sort(s["user_id"].unique())[:n] if n else np.array([], object)
        sets = s[s["user_id"].isin(set(users))].groupby("user_id")["item_id"].agg(frozenset)
        value = len(frozenset().union(*sets)) / catalog if len(sets) else float("nan")
        boots = [len(frozenset().union(*sets.iloc[rng.integers(0, len(sets), len(sets))])) / catalog
                 for _ in range(BOOTSTRAP if len(sets) > 1 else 0)]
        out[a] = Stat(value, float(np.std(boots)) if boots else float("inf"), len(sets))
    return out


def _stat(s: Stat) -> dict[str, Any]:
    half = 1.96 * s.se
    return {"value": s.value, "se": s.se, "ci": [s.value - half, s.value + half], "users": s.users}


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (valid JSON: no metric, no bound)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return finite(obj.item())
    return obj


def analyse(lg: Logged, exp: Experiment, looks: int = 20, alpha: float = 0.05, tau_rel: float = 0.1,
            geometric: bool = False) -> dict[str, Any]:
    """The report of one experiment (JSON-ready: a metric without data is None). See the module
    docstring. ``geometric`` spaces the looks geometrically in the number of feeds (dense early: when
    a run's detection time matters)."""
    return finite(_analyse(lg, exp, looks, alpha, tau_rel, geometric))


def _analyse(lg: Logged, exp: Experiment, looks: int, alpha: float, tau_rel: float,
             geometric: bool) -> dict[str, Any]:
    feeds, slots = _labelled(lg, exp.name)
    base = {"experiment": exp.model_dump(), "feeds": len(feeds), "impressions": len(slots),
            "window": {"first_feed": float(feeds["ts"].min()) if len(feeds) else None,
                       "last_feed": float(feeds["ts"].max()) if len(feeds) else None}}
    levels = np.geomspace(1.0 / looks ** 1.5, 1.0, looks) if geometric else np.linspace(0, 1, looks + 1)[1:]
    if exp.kind == "interleave":
        return base | _interleaving(lg, exp, levels, alpha)
    return base | _ab(lg, exp, feeds, slots, levels, alpha, tau_rel)


def _checkpoints(feeds: pd.DataFrame, levels: np.ndarray) -> list[float]:
    if feeds.empty:
        return []
    return sorted({float(t) for t in np.quantile(feeds["ts"].to_numpy(), levels)})


def _ab(lg: Logged, exp: Experiment, feeds: pd.DataFrame, slots: pd.DataFrame, looks: np.ndarray,
        alpha: float, tau_rel: float) -> dict[str, Any]:
    names = [a.name for a in exp.arms]
    control, treatments = names[0], names[1:]
    levels = alpha_levels(alpha, len(treatments))
    per_test = levels["coverage"]
    crossed = feeds.groupby("user_id")["arm"].nunique()
    history: dict[tuple[str, str], list[SequentialTest]] = {}
    timeline, last = [], {}
    for t in _checkpoints(feeds, looks):
        f, s = feeds[feeds["ts"] <= t], slots[slots["ts"] <= t]
        users = user_table(f, s)
        stats = {a: arm_stats(users, a) for a in names}
        last = {a: {m: _compare(stats[control][m], stats[a][m], (m, a), levels[m], tau_rel, history)
                    for m in RATIOS} for a in treatments}
        timeline.append(_point(t, s, stats, last))
    users = user_table(feeds, slots)
    stats = {a: arm_stats(users, a) for a in names}
    cover = coverage(slots, names, lg.catalog_size)
    cover_cmp = {a: compare(cover[control], cover[a], per_test, tau_rel) for a in treatments}
    counts = {a: int((users.index.get_level_values(0) == a).sum()) for a in names}
    arms = {a: {"users": counts[a], "feeds": int((feeds["arm"] == a).sum()),
                "impressions": int((slots["arm"] == a).sum()),
                "metrics": {**{m: _stat(v) for m, v in stats[a].items()}, "coverage": _stat(cover[a])}}
            for a in names}
    comparisons = {a: {**{m: c.as_dict() for m, c in last.get(a, {}).items()},
                       "coverage": cover_cmp[a].as_dict()} for a in treatments}
    srm = sample_ratio(counts, {a.name: a.share for a in exp.arms})
    return {"control": control, "alpha": alpha, "alpha_per_test": per_test, "primary_metric": PRIMARY,
            "alpha_primary": levels[PRIMARY], "alpha_levels": levels, "arms": arms,
            "comparisons": comparisons, "sample_ratio": srm.as_dict(),
            "users_in_several_arms": int((crossed > 1).sum()), "timeline": timeline,
            "decisions": _decisions(comparisons, srm.mismatch)}


def alpha_levels(alpha: float, treatments: int) -> dict[str, float]:
    """Each metric's test level: the primary metric (CTR) ``PRIMARY_SHARE`` of ``alpha``, the others
    an equal part of the rest, all divided by the number of treatment arms; they sum to ``alpha``."""
    others = [m for m in (*RATIOS, "coverage") if m != PRIMARY]
    arms = max(treatments, 1)
    return {PRIMARY: alpha * PRIMARY_SHARE / arms,
            **{m: alpha * (1.0 - PRIMARY_SHARE) / (len(others) * arms) for m in others}}


def _compare(c: Stat, t: Stat, key: tuple[str, str], alpha: float, tau_rel: float,
             history: dict[tuple[str, str], list[SequentialTest]]) -> Comparison:
    """One look of (metric, arm) against control, carrying that pair's earlier looks."""
    hist = history.setdefault(key, [])
    out = compare(c, t, alpha, tau_rel, RATIOS[key[0]][2], hist)
    hist.append(out.look())
    return out


def _point(t: float, s: pd.DataFrame, stats: dict[str, dict[str, Stat]],
           last: dict[str, dict[str, Comparison]]) -> dict[str, Any]:
    return {"t": t, "impressions": int(len(s)),
            "ctr": {a: v["ctr"].value for a, v in stats.items()},
            "p_ctr": {a: c["ctr"].p_always_valid for a, c in last.items()},
            "diff_ctr": {a: [c["ctr"].diff, *c["ctr"].confidence_sequence] for a, c in last.items()}}


def _decisions(comparisons: dict[str, dict[str, Any]], mismatch: bool) -> list[str]:
    if mismatch:
        return ["sample-ratio mismatch: the split or the logging is broken; no metric can be trusted"]
    return [f"{arm}: {metric} {'better' if c['declared'] == 'treatment' else 'worse'} than control "
            f"({c['relative']:+.1%}, always-valid p = {c['p_always_valid']:.3g})"
            for arm, cmp in comparisons.items() for metric, c in cmp.items() if c["declared"]]


def _interleaving(lg: Logged, exp: Experiment, looks: np.ndarray, alpha: float) -> dict[str, Any]:
    feeds, slots = _labelled(lg, exp.name)
    a, b = exp.arms[0].name, exp.arms[1].name
    slots = slots[slots["arm"] == INTERLEAVED]
    to_b = (slots["team"] == b).to_numpy()
    credited = slots.assign(ca=slots["click"] & ~to_b, cb=slots["click"] & to_b)  # models.interleaving.credit
    per_feed = credited.groupby("feed_id")[["ca", "cb"]].sum().reset_index()
    per_feed = per_feed.merge(feeds[["feed_id", "user_id", "ts"]], on="feed_id").sort_values("ts")
    per_feed["wa"], per_feed["wb"] = per_feed["ca"] > per_feed["cb"], per_feed["cb"] > per_feed["ca"]
    timeline, p_min = [], 1.0
    for t in _checkpoints(feeds, looks):
        cut = per_feed[per_feed["ts"] <= t].groupby("user_id")[["wa", "wb"]].sum()
        pref = preference(cut["wa"], cut["wb"], alpha)
        p_min = min(p_min, pref.p_always_valid)
        timeline.append({"t": t, "impressions": int((slots["ts"] <= t).sum()), "delta": pref.delta,
                         "p_always_valid": p_min, "ci": list(pref.ci)})
    wins = per_feed.groupby("user_id")[["wa", "wb"]].sum()
    pref = preference(wins["wa"], wins["wb"], alpha)
    winner = None if p_min >= alpha else (b if pref.delta > 0 else a)
    return {"arms": {"A": a, "B": b}, "preference": {**pref.as_dict(), "p_always_valid": p_min,
                                                     "winner": winner},
            "credited_clicks": {a: int(per_feed["ca"].sum()), b: int(per_feed["cb"].sum())},
            "timeline": timeline,
            "decisions": [f"users prefer {winner} (always-valid p = {p_min:.3g})"] if winner else []}
