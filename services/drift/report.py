"""A self-contained HTML drift report: a table of statistics and inline-SVG histograms."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_W, _H, _PAD = 360, 140, 20


@dataclass
class Panel:
    """One plot: reference vs current histogram of a numeric sample, or category shares."""

    title: str
    reference: Sequence[float] | Mapping[str, float]
    current: Sequence[float] | Mapping[str, float]


@dataclass
class ReportData:
    title: str
    rows: list[tuple[str, float, float, bool]]  # statistic, value, threshold, crossed
    reasons: list[str]
    panels: list[Panel] = field(default_factory=list)


def _bars(ref: np.ndarray, cur: np.ndarray, labels: list[str]) -> str:
    n, top = len(ref), max(float(ref.max(initial=0)), float(cur.max(initial=0)), 1e-9)
    width = (_W - 2 * _PAD) / max(n, 1)
    parts = []
    for i in range(n):
        x = _PAD + i * width
        for k, (vals, color) in enumerate(((ref, "#4c78a8"), (cur, "#f58518"))):
            h = (_H - 2 * _PAD) * float(vals[i]) / top
            parts.append(f'<rect x="{x + k * width / 2:.1f}" y="{_H - _PAD - h:.1f}" '
                         f'width="{width / 2 - 1:.1f}" height="{h:.1f}" fill="{color}">'
                         f"<title>{html.escape(labels[i])}: {float(vals[i]):.3f}</title></rect>")
    return "".join(parts)


def _histograms(panel: Panel) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if isinstance(panel.reference, Mapping) and isinstance(panel.current, Mapping):
        labels = sorted(set(panel.reference) | set(panel.current))
        ref = np.array([panel.reference.get(k, 0.0) for k in labels])
        cur = np.array([panel.current.get(k, 0.0) for k in labels])
        return ref, cur, labels
    ref_v = np.asarray(panel.reference, dtype=float)
    cur_v = np.asarray(panel.current, dtype=float)
    both = np.concatenate([ref_v, cur_v]) if len(ref_v) + len(cur_v) else np.zeros(1)
    edges = np.histogram_bin_edges(both, bins=20)
    ref = np.histogram(ref_v, edges)[0] / max(len(ref_v), 1)
    cur = np.histogram(cur_v, edges)[0] / max(len(cur_v), 1)
    return ref, cur, [f"{edges[i]:.3g}..{edges[i + 1]:.3g}" for i in range(len(edges) - 1)]


def svg_panel(panel: Panel) -> str:
    ref, cur, labels = _histograms(panel)
    return (f'<figure><figcaption>{html.escape(panel.title)}</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">'
            f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#333"/>'
            f"{_bars(ref, cur, labels)}</svg></figure>")


def render_html(data: ReportData) -> str:
    rows = "".join(
        f"<tr class='{'bad' if crossed else 'ok'}'><td>{html.escape(name)}</td><td>{value:.4f}</td>"
        f"<td>{threshold:.4f}</td><td>{'DRIFT' if crossed else 'ok'}</td></tr>"
        for name, value, threshold, crossed in data.rows)
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in data.reasons) or "<li>no drift</li>"
    panels = "".join(svg_panel(p) for p in data.panels)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(data.title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd}}
tr.bad{{background:#fde0dc}}figure{{display:inline-block;margin:8px}}
.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}}</style></head><body>
<h1>{html.escape(data.title)}</h1><ul>{reasons}</ul>
<table><tr><th>statistic</th><th>value</th><th>threshold</th><th>status</th></tr>{rows}</table>
<p class="legend"><span style="background:#4c78a8"></span>reference
<span style="background:#f58518"></span>current</p>{panels}</body></html>"""


def write_report(data: ReportData, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_html(data), encoding="utf-8")
    tmp.replace(path)
    return path
