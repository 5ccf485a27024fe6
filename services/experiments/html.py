"""The experiment report as one self-contained HTML page: tables and inline SVG charts (no CDN, no
plotting library), like the demo report."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

W, H, PAD = 640, 260, 52
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _scale(v: float, lo: float, hi: float, a: float, b: float) -> float:
    return a + (v - lo) / ((hi - lo) or 1.0) * (b - a)


def chart(title: str, xs: Sequence[float], series: Mapping[str, Sequence[float | None]],
          x_label: str = "impressions", zero: bool = False) -> str:
    """Lines over shared ``xs``; the y range covers every value (negative ones too), with a dashed
    zero line when ``zero``. ``None`` values are skipped."""
    vals = [v for ys in series.values() for v in ys if v is not None]
    if not xs or not vals:
        return f"<p>{html.escape(title)}: no data yet</p>"
    lo, hi = min([*vals, 0.0] if zero else vals), max([*vals, 0.0] if zero else vals)
    x0, x1 = min(xs), max(xs)
    head = html.escape(title)
    parts = [f'<text x="{W / 2}" y="16" text-anchor="middle" font-weight="bold">{head}</text>',
             f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#444"/>',
             f'<line x1="{PAD}" y1="24" x2="{PAD}" y2="{H - PAD}" stroke="#444"/>',
             f'<text x="{PAD - 4}" y="30" text-anchor="end" font-size="10">{hi:.4g}</text>',
             f'<text x="{PAD - 4}" y="{H - PAD}" text-anchor="end" font-size="10">{lo:.4g}</text>',
             f'<text x="{PAD}" y="{H - PAD + 14}" font-size="10">{x0:.4g}</text>',
             f'<text x="{W - 10}" y="{H - PAD + 14}" text-anchor="end" font-size="10">{x1:.4g}</text>',
             f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle" font-size="12">'
             f'{html.escape(x_label)}</text>']
    if zero:
        y = _scale(0.0, lo, hi, H - PAD, 24)
        parts.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - 10}" y2="{y:.1f}" stroke="#999" '
                     'stroke-dasharray="4 3"/>')
    for k, (name, ys) in enumerate(series.items()):
        pts = " ".join(f"{_scale(x, x0, x1, PAD, W - 10):.1f},{_scale(y, lo, hi, H - PAD, 24):.1f}"
                       for x, y in zip(xs, ys, strict=False) if y is not None)
        color = COLORS[k % len(COLORS)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        parts.append(f'<text x="{PAD + 8 + 150 * k}" y="38" font-size="11" fill="{color}">'
                     f'{html.escape(name)}</text>')
    body = "\n  ".join(parts)
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">' \
           f'\n  {body}\n</svg>'


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple) and all(isinstance(x, float | int) for x in v):
        return "[" + ", ".join(f"{x:.4g}" for x in v) + "]"
    return html.escape(str(v))


def _pm(stat: Mapping[str, Any]) -> str:
    if stat.get("value") is None:
        return "-"
    se = stat.get("se")
    return _cell(stat["value"]) + ("" if se is None else f" ± {_cell(1.96 * se)}")


def _arms_table(report: Mapping[str, Any]) -> str:
    arms = report.get("arms", {})
    metrics = sorted({m for a in arms.values() for m in a.get("metrics", {})})
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    rows = []
    for name, arm in arms.items():
        stats = [arm["metrics"][m] for m in metrics]
        cells = "".join(f"<td>{_pm(s)}</td>" for s in stats)
        rows.append(f"<tr><th>{html.escape(name)}</th><td>{arm['users']}</td><td>{arm['impressions']}</td>"
                    f"{cells}</tr>")
    return f"<table><tr><th>arm</th><th>users</th><th>impressions</th>{head}</tr>{''.join(rows)}</table>"


def _comparisons_table(report: Mapping[str, Any]) -> str:
    rows = []
    for arm, metrics in report.get("comparisons", {}).items():
        for m, c in metrics.items():
            rows.append(f"<tr><td>{html.escape(arm)}</td><td>{html.escape(m)}</td>"
                        f"<td>{_cell(c['relative'])}</td><td>{_cell(list(c['confidence_sequence']))}</td>"
                        f"<td>{_cell(c['p_always_valid'])}</td>"
                        f"<td>{html.escape(str(c['declared'] or '-'))}</td></tr>")
    return ("<table><tr><th>arm</th><th>metric</th><th>relative diff</th><th>always-valid 95% sequence "
            "(abs diff)</th><th>always-valid p</th><th>declared</th></tr>" + "".join(rows) + "</table>")


def _charts(report: Mapping[str, Any]) -> list[str]:
    tl = report.get("timeline", [])
    xs = [float(p["impressions"]) for p in tl]
    if "preference" in report:
        return [chart("Per-user preference for B (delta) with its always-valid sequence", xs,
                      {"delta": [p["delta"] for p in tl], "low": [p["ci"][0] for p in tl],
                       "high": [p["ci"][1] for p in tl]}, zero=True),
                chart("Always-valid p-value", xs, {"p": [p["p_always_valid"] for p in tl]})]
    arms = list(report.get("arms", {}))
    treat = list(report.get("comparisons", {}))
    out = [chart("CTR by arm (cumulative)", xs, {a: [p["ctr"].get(a) for p in tl] for a in arms})]
    for a in treat:
        out.append(chart(f"CTR difference {a} - control with its always-valid 95% sequence", xs,
                         {"diff": [p["diff_ctr"][a][0] for p in tl], "low": [p["diff_ctr"][a][1] for p in tl],
                          "high": [p["diff_ctr"][a][2] for p in tl]}, zero=True))
    out.append(chart("Always-valid p-value of the CTR difference", xs,
                     {a: [p["p_ctr"].get(a) for p in tl] for a in treat}))
    return out


def render(report: Mapping[str, Any]) -> str:
    exp = report.get("experiment", {})
    name = html.escape(str(exp.get("name", "experiment")))
    decisions = "".join(f"<li>{html.escape(d)}</li>" for d in report.get("decisions", [])) or \
        "<li>nothing declared yet</li>"
    srm = report.get("sample_ratio")
    srm_html = ""
    if srm is not None:
        expected = {k: round(v) for k, v in srm["expected"].items()}
        verdict = "MISMATCH" if srm["mismatch"] else "ok"
        srm_html = (f"<p>Sample ratio: users {srm['observed']} against expected {expected}, "
                    f"p = {srm['p_value']:.3g} ({verdict})</p>")
    if "preference" in report:
        body = f"<pre>{html.escape(json.dumps(report['preference'], indent=2))}</pre>"
    else:
        body = _arms_table(report) + _comparisons_table(report)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>experiment {name}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:64em}}td,th{{border-bottom:1px solid #ddd;
padding:2px 8px;text-align:left}}table{{border-collapse:collapse;margin:1em 0}}</style></head><body>
<h1>Experiment {name}</h1>
<p>{html.escape(str(exp.get('kind', '')))} in layer {html.escape(str(exp.get('layer', '')))};
{report.get('feeds', 0)} feeds, {report.get('impressions', 0)} impressions. Tests are always valid:
reading this report at any time does not inflate false alarms (mixture sequential test). The primary
metric ({report.get('primary_metric', 'ctr')}) is declared when its always-valid p is below
{report.get('alpha_primary') or report.get('alpha', 0.05)}, every other metric below
{report.get('alpha_per_test') or report.get('alpha', 0.05)} (the report's
{report.get('alpha', 0.05)} shared by its metrics), and the sequences are at those levels.</p>
<h2>Decisions</h2><ul>{decisions}</ul>
{srm_html}
{body}
<h2>Over time</h2>
{''.join(_charts(report))}
</body></html>
"""
