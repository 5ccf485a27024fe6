"""The HTML report of ``streamrec bench loop``: inline SVG charts (services.demo.report), no CDN."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.demo.report import line_chart

X = "seconds of traffic"


def _marks(out: Mapping[str, Any]) -> list[tuple[float, str]]:
    return [(float(p["first_served_t"] if p["first_served_t"] is not None else p["t"]),
             f"{p['kind']} {p['version'][:6]}") for p in out.get("promotions", [])]


def _col(tl: list[dict[str, Any]], *path: str) -> list[float | None]:
    out = []
    for row in tl:
        v: Any = row
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
        out.append(None if v is None else float(v))
    return out


def charts(out: Mapping[str, Any]) -> list[str]:
    tl = out.get("timeline", [])
    xs = [float(r["t"]) for r in tl]
    marks = _marks(out)
    return [
        line_chart("True CTR of shown feeds (per examined slot)", xs, {
            "ours": _col(tl, "ours"), "random": _col(tl, "random"), "oracle": _col(tl, "oracle")},
            X, marks),
        line_chart("Share of the random-to-oracle gap captured", xs, {
            "all users": _col(tl, "gap"), "cold users": _col(tl, "cold", "gap"),
            "young items": _col(tl, "young", "gap")}, X, marks, refs=[(0.5, "goal 0.5"), (0.0, "random")]),
        line_chart("Lift over the random policy (ours / random)", xs, {
            "all users": _col(tl, "lift"), "cold users (<= 5 interactions)": _col(tl, "cold", "lift")},
            X, marks, refs=[(2.0, "goal 2.0"), (1.5, "cold goal 1.5"), (1.0, "random")]),
        line_chart("Feeds per window", xs, {"published": _col(tl, "feeds_published"),
                                            "shown to users": _col(tl, "n")}, X, marks),
        *_regret_chart(out, marks),
    ]


def _regret_chart(out: Mapping[str, Any], marks: list[tuple[float, str]]) -> list[str]:
    curve = (out.get("regret_vs_oracle") or {}).get("curve") or []
    if not curve:
        return []
    return [line_chart("Cumulative regret against the oracle (true CTR lost, summed over feeds)",
                       [float(p["t"]) for p in curve], {"ours": [float(p["cumulative"]) for p in curve]},
                       X, marks)]


HEADLINE = ("ctr", "lift_vs_random", "gap_captured", "regret_vs_oracle", "cold_user_lift",
            "new_items_shown_within_60s", "new_items", "young_items", "cold_users", "shown_by_source",
            "event_to_feed_ms", "feed_age_at_visit_s", "stale_slot_share", "cpu",
            "settings", "whole_run", "feeds_published", "feeds_degraded", "visits_to_a_feed",
            "organic_views", "events_produced", "users_arrived", "child_restarts", "options")


def _table(out: Mapping[str, Any]) -> str:
    rows = [f"<tr><th>{html.escape(k)}</th><td><pre>"
            f"{html.escape(json.dumps(out.get(k), indent=1, default=str))}</pre></td></tr>"
            for k in HEADLINE if k in out]
    return "\n".join(rows)


def _promotions(out: Mapping[str, Any]) -> str:
    rows = []
    for p in out.get("promotions", []):
        b, a = p["ctr_before"], p["ctr_after"]
        rows.append(f"<tr><td>{html.escape(p['kind'])}</td><td>{html.escape(p['version'])}</td><td>{p['t']}</td>"
                    f"<td>{p['first_served_t']}</td><td>{b['ours']} / {b['gap']}</td>"
                    f"<td>{a['ours']} / {a['gap']}</td></tr>")
    head = ("<tr><th>kind</th><th>version</th><th>promoted (t)</th><th>first served (t)</th>"
            "<th>before: ours CTR / gap</th><th>after: ours CTR / gap</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>" if rows else "<p>No model was promoted during the run.</p>"


def render_loop_html(out: Mapping[str, Any]) -> str:
    svgs = "\n".join(charts(out))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>streamrec closed-loop benchmark</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:64em}}th{{text-align:left;padding-right:2em;
vertical-align:top}}td,th{{border-bottom:1px solid #ddd;padding:2px 8px}}pre{{margin:0}}</style></head><body>
<h1>streamrec closed-loop benchmark</h1>
<p>Simulated users see the feeds the live stack publishes and react by the simulator's hidden click
model, through Kafka. {html.escape(str(out.get("ctr", {}).get("definition", "")))}.
Vertical lines: model promotions (when a feed first carried the version).</p>
{svgs}
<h2>Promotions</h2>{_promotions(out)}
<h2>Figures</h2><table>{_table(out)}</table>
</body></html>
"""


def write_loop_html(out: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_loop_html(out))
