"""The demo's JSON summary and a self-contained HTML report (inline SVG charts, no plotting lib)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

W, H, PAD = 640, 260, 44
COLORS = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e")


def write_json(summary: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _scale(values: Sequence[float], lo: float, hi: float, out_lo: float, out_hi: float) -> list[float]:
    span = (hi - lo) or 1.0
    return [out_lo + (v - lo) / span * (out_hi - out_lo) for v in values]


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _axes(title: str, x_label: str, y_max: float, x_max: float, x_min: float = 0.0,
          y_min: float = 0.0) -> list[str]:
    return [
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#444"/>',
        f'<line x1="{PAD}" y1="24" x2="{PAD}" y2="{H - PAD}" stroke="#444"/>',
        f'<text x="{PAD - 4}" y="30" text-anchor="end" font-size="11">{_num(y_max)}</text>',
        f'<text x="{PAD - 4}" y="{H - PAD}" text-anchor="end" font-size="11">{_num(y_min)}</text>',
        f'<text x="{PAD}" y="{H - PAD + 14}" text-anchor="start" font-size="11">{x_min:.0f}</text>',
        f'<text x="{W - 10}" y="{H - PAD + 14}" text-anchor="end" font-size="11">{x_max:.0f}</text>',
        f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle" font-size="12">{html.escape(x_label)}</text>',
    ]


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None]


def line_chart(title: str, xs: Sequence[float], series: Mapping[str, Sequence[float | None]],
               x_label: str = "seconds", marks: Sequence[tuple[float, str]] = (),
               refs: Sequence[tuple[float, str]] = ()) -> str:
    """An SVG line chart of several series sharing ``xs`` (None: a gap). ``marks``: labelled vertical
    lines at x values (e.g. promotions); ``refs``: labelled horizontal lines at y values (e.g. 1.0)."""
    x_min, x_max = min(xs, default=0.0), max(xs, default=1.0)
    values = [v for ys in series.values() for v in _finite(ys)] + [y for y, _ in refs]
    y_max = max(values, default=1.0) or 1.0
    y_min = min(0.0, *values) if values else 0.0
    parts = _axes(title, x_label, y_max, x_max, x_min, y_min)
    px = _scale(xs, x_min, x_max, PAD, W - 10)
    for y, label in refs:
        ry = _scale([y], y_min, y_max, H - PAD, 24)[0]
        parts.append(f'<line x1="{PAD}" y1="{ry:.1f}" x2="{W - 10}" y2="{ry:.1f}" stroke="#999" '
                     f'stroke-dasharray="4 3"/><text x="{W - 12}" y="{ry - 3:.1f}" text-anchor="end" '
                     f'font-size="10" fill="#666">{html.escape(label)}</text>')
    for x, label in marks:
        mx = _scale([x], x_min, x_max, PAD, W - 10)[0]
        parts.append(f'<line x1="{mx:.1f}" y1="24" x2="{mx:.1f}" y2="{H - PAD}" stroke="#bbb"/>'
                     f'<text x="{mx + 2:.1f}" y="{H - PAD - 4}" font-size="9" fill="#666">'
                     f'{html.escape(label)}</text>')
    for k, (name, ys) in enumerate(series.items()):
        py = _scale([0.0 if v is None else float(v) for v in ys], y_min, y_max, H - PAD, 24)
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y, v in zip(px, py, ys, strict=False) if v is not None)
        color = COLORS[k % len(COLORS)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        parts.append(f'<text x="{PAD + 8 + 150 * k}" y="36" font-size="12" '
                     f'fill="{color}">{html.escape(name)}</text>')
    return _svg(parts)


def histogram(title: str, values: Sequence[float], bins: int = 30, x_label: str = "ms") -> str:
    """An SVG histogram (linear bins from 0 to the 99th percentile, overflow in the last bin)."""
    if not values:
        return _svg(_axes(title + " (no data)", x_label, 1.0, 1.0))
    ordered = sorted(values)
    top = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] or 1.0
    counts = [0] * bins
    for v in ordered:
        counts[min(bins - 1, int(v / top * bins))] += 1
    parts = _axes(title, x_label, float(max(counts)), top)
    bar_w = (W - 10 - PAD) / bins
    for i, c in enumerate(counts):
        h = c / max(counts) * (H - PAD - 24)
        parts.append(f'<rect x="{PAD + i * bar_w:.1f}" y="{H - PAD - h:.1f}" width="{bar_w - 1:.1f}" '
                     f'height="{h:.1f}" fill="{COLORS[0]}"/>')
    return _svg(parts)


def _svg(parts: list[str]) -> str:
    body = "\n  ".join(parts)
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" ' \
           f'font-family="sans-serif">\n  {body}\n</svg>'


def _rows(summary: Mapping[str, Any]) -> str:
    keep = {k: v for k, v in summary.items() if not isinstance(v, list | dict)}
    return "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                     for k, v in sorted(keep.items()))


def render_html(summary: Mapping[str, Any], latencies_ms: Sequence[float]) -> str:
    tl = summary.get("timeline", [])
    xs = [float(p["t"]) for p in tl]
    rates = line_chart("Throughput per second", xs, x_label="seconds since the demo started", series={
        "events produced/s": [float(p["produced_per_s"]) for p in tl],
        "events processed/s": [float(p["processed_per_s"]) for p in tl],
        "feeds published/s": [float(p["feeds_per_s"]) for p in tl],
        "dead-lettered/s": [float(p["dlq_per_s"]) for p in tl]})
    hist = histogram("Event -> feed latency", latencies_ms)
    curve = summary.get("learning_curve", [])
    learning = line_chart("Personalisation lift of the feeds published in each window",
                          [float(p["t"]) for p in curve], x_label="seconds since the demo started",
                          series={"personalisation_lift": [float(p["personalisation_lift"]) for p in curve]},
                          refs=[(1.0, "1.0 = random catalogue items"), (1.5, "goal 1.5")])
    lift = summary.get("personalisation_lift")
    reasons = summary.get("dlq_reasons", {})
    dlq = "".join(f"<li>{html.escape(str(k))}: {v}</li>" for k, v in sorted(reasons.items()))
    dlq = dlq or "<li>none</li>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>streamrec demo report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}th{{text-align:left;padding-right:2em}}
td,th{{border-bottom:1px solid #ddd;padding:2px 8px}}</style></head><body>
<h1>streamrec demo</h1>
<p>Simulated users browse a synthetic catalogue; events flow through Kafka into the stream worker,
feeds are recomputed by the publisher and published to the feeds topic.</p>
<h2>Does it personalise, and does it learn?</h2>
<p><b>personalisation_lift at the end: {html.escape(str(lift))}</b> (the users' latest feeds).
{html.escape(str(summary.get("personalisation_lift_meaning", "")))}</p>
{learning}
<p>The curve scores every feed as it is published, against its user's catalogue mean at that moment;
a rising curve is the platform learning from the events it ingests.</p>
<h2>Throughput</h2>
{rates}
<h2>Latency (event timestamp to feed record on the topic)</h2>
{hist}
<h2>Dead letters by reason</h2><ul>{dlq}</ul>
<h2>Summary</h2><table>{_rows(summary)}</table>
</body></html>
"""


def write_html(summary: Mapping[str, Any], latencies_ms: Sequence[float], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(summary, latencies_ms))
