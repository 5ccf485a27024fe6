"""The JSON of ``streamrec bench loop``: CTR by the truth over time, new items, promotions, costs.

Times in the output are seconds since the traffic started (``t``), unless named ``*_at`` (unix).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.demo.closed_loop import ClosedLoop, LoopOptions, NewItem, Slot
from services.demo.truth import Moment, summarise, summarise_young

NEW_ITEM_DEADLINE_S = 60.0
CTR_DEFINITION = (
    "true CTR = the feed's click probability per examined slot by the simulator's hidden click model, "
    "positions weighted by World.respond's examination probability 1/log2(position+2), over the first "
    "`shown` items; random = the mean click probability of the user's eligible items (catalogue minus "
    "items already acted on), oracle = the user's best eligible items in order; all three for the same "
    "user at the same moment (each feed shown); windows are ratios of means")


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def in_window(moments: Sequence[Moment], a: float, b: float) -> list[Moment]:
    return [m for m in moments if a <= m.t < b]


def _versions(moments: Sequence[Moment]) -> str:
    served = Counter(f"{m.model_version}/{m.index_version}" for m in moments)
    return served.most_common(1)[0][0] if served else ""


def window_row(moments: Sequence[Moment], a: float, b: float, published: Sequence[float]) -> dict[str, Any]:
    rows = in_window(moments, a, b)
    cold = [m for m in rows if m.cold]
    return {"t": round(b, 1), **summarise(rows), "cold": summarise(cold), "young": summarise_young(rows),
            "feeds_published": sum(1 for p in published if a <= p < b),
            "served": _versions(rows)}


def timeline(moments: Sequence[Moment], published: Sequence[float], traffic_s: float,
             window_s: float) -> list[dict[str, Any]]:
    edges = [*np.arange(0.0, traffic_s - window_s / 2, window_s), traffic_s]  # the last one takes a stub
    return [window_row(moments, float(a), float(b), published) for a, b in zip(edges, edges[1:], strict=False)
            if b > a]


@dataclass(frozen=True)
class Span:
    """The run's traffic on the wall clock."""

    started: float
    traffic_s: float

    def t(self, wall: float | None) -> float | None:
        return None if wall is None else round(wall - self.started, 2)


def by_source(slots: Sequence[Slot], start: float) -> dict[str, dict[str, float]]:
    """Shown slots from ``start`` on, per candidate source: how many, their mean true click
    probability (unweighted), mean position and mean feed score: where the feed's quality comes
    from, and whether the ranker put a source's items there."""
    acc: dict[str, list[Slot]] = {}
    for slot in slots:
        if slot.t >= start:
            acc.setdefault(slot.source, []).append(slot)
    total = sum(len(v) for v in acc.values()) or 1
    return {s: {"share": round(len(v) / total, 4), "mean_true_p": round(float(np.mean([x.p for x in v])), 5),
                "mean_position": round(float(np.mean([x.position for x in v])), 2),
                "mean_score": round(float(np.mean([x.score for x in v])), 4)}
            for s, v in sorted(acc.items())}


def new_items_report(items: dict[str, NewItem], span: Span) -> dict[str, Any]:
    """Upsert -> first feed that carried the item. Items upserted less than 60 s before the traffic
    ended cannot be judged and are left out; judged items never seen in a feed count as misses."""
    end = span.started + span.traffic_s
    judged = {k: v for k, v in items.items() if v.upserted <= end - NEW_ITEM_DEADLINE_S}
    delays = [v.first_feed - v.upserted for v in judged.values() if v.first_feed is not None]
    shown = [v.first_shown - v.upserted for v in judged.values() if v.first_shown is not None]
    within = sum(1 for d in delays if d <= NEW_ITEM_DEADLINE_S)
    n = len(judged)
    return {
        "upserted": len(items), "judged": n, "in_a_feed_within_60s": within,
        "never_in_a_feed": sum(1 for v in judged.values() if v.first_feed is None),
        "first_feed_s_p50": _pct(delays, 50), "first_feed_s_p90": _pct(delays, 90),
        "first_feed_s_max": round(max(delays), 2) if delays else None,
        "first_feed_source": dict(Counter(v.first_source for v in judged.values() if v.first_feed)),
        "first_feed_rank_p50": _pct([v.first_rank for v in judged.values() if v.first_feed], 50),
        "shown_to_a_user_within_60s": round(sum(1 for d in shown if d <= NEW_ITEM_DEADLINE_S) / n, 4) if n
        else None,
        "within_60s": round(within / n, 4) if n else None,
    }


def served_at(model: dict[str, Any], first: dict[tuple[str, str], float],
              indexes: Sequence[dict[str, Any]]) -> float | None:
    """When a feed first carried ``model``: a ranker by its version (Feed.model_version), a two-tower
    through the first index built from it (Feed.index_version); other kinds are not on the feed."""
    if model["kind"] == "ranker":
        return first.get(("model", model["version"]))
    if model["kind"] == "two_tower":
        times = [first[("index", i["version"])] for i in indexes
                 if i.get("model_version") == model["version"] and ("index", i["version"]) in first]
        return min(times, default=None)
    return None


def promotions(registry: dict[str, Any], first_served: dict[tuple[str, str], float],
               moments: Sequence[Moment], span: Span, around_s: float) -> list[dict[str, Any]]:
    """Each promoted model version: when, when a feed first carried it, CTR before and after (the
    ``around_s`` before the promotion; the ``around_s`` after it was first served, else promoted)."""
    out = []
    models, indexes = registry.get("models", []), registry.get("indexes", [])
    for m in sorted((m for m in models if m.get("promoted_at")), key=lambda m: m["promoted_at"]):
        t, served = span.t(m["promoted_at"]), span.t(served_at(m, first_served, indexes))
        assert t is not None
        start = served if served is not None else t
        out.append({"kind": m["kind"], "version": m["version"], "promoted_at": m["promoted_at"], "t": t,
                    "first_served_t": served, "status": m["status"],
                    "ctr_before": summarise(in_window(moments, t - around_s, t)),
                    "ctr_after": summarise(in_window(moments, start, start + around_s))})
    return out


REGRET_DEFINITION = (
    "per feed shown: the oracle feed's true CTR minus the shown feed's (same user, moment and number of "
    "slots, CTR as defined under ctr); cumulative = their sum in the order the feeds were shown")


def regret(final: Sequence[Moment], moments: Sequence[Moment], marks: int = 20) -> dict[str, Any]:
    """Regret against the simulator's oracle: per feed (end window, whole run) and its cumulative curve."""
    ordered = sorted(moments, key=lambda m: m.t)
    lost = np.cumsum([m.oracle - m.ours for m in ordered]) if ordered else np.zeros(0)
    at: list[int] = sorted({int(k) for k in np.linspace(0, len(lost) - 1, marks + 1)}) if len(lost) else []

    def per_feed(ms: Sequence[Moment]) -> float | None:
        return round(float(np.mean([m.oracle - m.ours for m in ms])), 5) if ms else None

    return {"per_feed_end": per_feed(final), "per_feed_whole_run": per_feed(ordered),
            "cumulative": round(float(lost[-1]), 3) if len(lost) else 0.0,
            "curve": [{"t": round(ordered[k].t, 1), "feeds": k + 1, "cumulative": round(float(lost[k]), 3)}
                      for k in at], "definition": REGRET_DEFINITION}


def results(loop: ClosedLoop, span: Span, registry: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    o: LoopOptions = loop.opts
    final_s = min(o.final_s, span.traffic_s / 2)
    start = span.traffic_s - final_s
    moments = loop.moments
    final = in_window(moments, start, span.traffic_s + 1.0)
    end = summarise(final)
    cold = summarise([m for m in final if m.cold])
    published = [p - span.started for p in loop.published.times]
    items = new_items_report(loop.new_items, span)
    lat = loop.published.latencies_ms
    return {
        "ctr": {"ours": end["ours"], "random": end["random"], "oracle": end["oracle"],
                "feeds_shown": end["n"], "window_t": [round(start, 1), round(span.traffic_s, 1)],
                "definition": CTR_DEFINITION},
        "lift_vs_random": end["lift"], "gap_captured": end["gap"], "regret_vs_oracle": regret(final, moments),
        "cold_user_lift": cold["lift"], "cold_users": {"end": cold, "whole_run": summarise(
            [m for m in moments if m.cold]), "definition": f"<= {o.cold_max} engaged interactions sent"},
        "young_items": {"end": summarise_young(final), "whole_run": summarise_young(moments),
                        "definition": f"items upserted less than {o.young_s:.0f} s before it was shown"},
        "new_items_shown_within_60s": items["within_60s"], "new_items": items,
        "whole_run": summarise(moments),
        "shown_by_source": {"end": by_source(loop.slots, start), "whole_run": by_source(loop.slots, 0.0)},
        "promotions": promotions(registry, loop.published.first_version, moments, span,
                                 max(o.window_s * 2, 60.0)),
        "registry": registry,
        "timeline": timeline(moments, published, span.traffic_s, o.window_s),
        "event_to_feed_ms": {"p50": _pct(lat, 50), "p90": _pct(lat, 90), "p99": _pct(lat, 99),
                             "samples": len(lat)},
        "feeds_published": len(published), "feeds_degraded": loop.published.degraded,
        "feed_age_at_visit_s": {"p50": _pct(loop.feed_ages_s, 50), "p90": _pct(loop.feed_ages_s, 90)},
        "stale_slot_share": round(sum(m.stale_slots for m in moments) / max(1, len(loop.slots)), 4),
        "visits_to_a_feed": loop.visits, "organic_views": loop.organic, "events_produced": loop.produced,
        "items_published": loop.items_published, "users_arrived": len(loop.active),
        "traffic_s": round(span.traffic_s, 1), "options": {**o.__dict__, "final_window_s": final_s},
        **extra,
    }
