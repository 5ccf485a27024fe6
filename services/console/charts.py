"""Server-rendered inline SVG charts for the console: no script, no CDN, nothing to download. Every
point and bar carries a ``<title>`` (the browser shows it on hover), and every chart has a text
fallback in its ``aria-label``. Output is markup-safe: all text is escaped here."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence

from markupsafe import Markup

W, H, LEFT, RIGHT, TOP, BOTTOM = 560, 200, 56, 12, 26, 26
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#a16207", "#db2777")
Point = tuple[float, float]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _frame(title: str, y_lo: float, y_hi: float, x_lo: str, x_hi: str, unit: str) -> list[str]:
    e = html.escape
    return [f'<text x="{LEFT}" y="15" class="ct">{e(title)}</text>',
            f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" class="ax"/>',
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" class="ax"/>',
            f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end" class="tk">{e(_fmt(y_hi))}</text>',
            f'<text x="{LEFT - 4}" y="{H - BOTTOM}" text-anchor="end" class="tk">{e(_fmt(y_lo))}</text>',
            f'<text x="{LEFT - 4}" y="{(TOP + H - BOTTOM) / 2}" text-anchor="end" class="tk">'
            f'{e(unit)}</text>',
            f'<text x="{LEFT}" y="{H - 8}" class="tk">{e(x_lo)}</text>',
            f'<text x="{W - RIGHT}" y="{H - 8}" text-anchor="end" class="tk">{e(x_hi)}</text>']


def _svg(parts: list[str], label: str) -> Markup:
    body = "".join(parts)
    return Markup(f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{html.escape(label)}">'
                  f"{body}</svg>")


def _empty(title: str, why: str) -> Markup:
    return Markup(f'<div class="chart empty"><b>{html.escape(title)}</b><br>{html.escape(why)}</div>')


def lines(title: str, series: Mapping[str, Sequence[Point]], unit: str = "",
          empty: str = "no data yet", scale: float = 1.0) -> Markup:
    """Time series (x: unix seconds, shown as clock time). ``scale`` multiplies every y (e.g. 1000
    for seconds shown as ms)."""
    data = {k: [(x, y * scale) for x, y in v] for k, v in series.items() if v}
    if not data:
        return _empty(title, empty)
    xs = [x for pts in data.values() for x, _ in pts]
    ys = [y for pts in data.values() for _, y in pts]
    x0, x1, y1 = min(xs), max(xs), max(max(ys), 0.0) or 1.0
    y0 = min(min(ys), 0.0)

    def px(x: float) -> float:
        return LEFT + (x - x0) / ((x1 - x0) or 1.0) * (W - LEFT - RIGHT)

    def py(y: float) -> float:
        return H - BOTTOM - (y - y0) / ((y1 - y0) or 1.0) * (H - TOP - BOTTOM)

    parts = _frame(title, y0, y1, _clock(x0), _clock(x1), unit)
    for k, (name, pts) in enumerate(sorted(data.items())):
        color = COLORS[k % len(COLORS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.2" fill="{color}"><title>'
                  f'{html.escape(name)} {_clock(x)}: {_fmt(y)} {html.escape(unit)}</title></circle>'
                  for x, y in pts[-60:]]
        parts.append(f'<text x="{W - RIGHT - 4}" y="{TOP + 12 + 13 * k}" text-anchor="end" class="lg" '
                     f'fill="{color}">{html.escape(name)}: {_fmt(pts[-1][1])}</text>')
    label = "; ".join(f"{n} now {_fmt(p[-1][1])} {unit}" for n, p in sorted(data.items()))
    return _svg(parts, f"{title}: {label}")


def bars(title: str, values: Mapping[str, float], unit: str = "", empty: str = "nothing to show") -> Markup:
    """Horizontal bars, largest first (at most 16)."""
    rows = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:16]
    if not rows:
        return _empty(title, empty)
    top = max(v for _, v in rows) or 1.0
    height = TOP + 18 * len(rows) + 8
    label_w = 190
    parts = [f'<text x="4" y="15" class="ct">{html.escape(title)}</text>']
    for k, (name, value) in enumerate(rows):
        y = TOP + 18 * k
        width = max(1.0, value / top * (W - label_w - 70))
        tip = f"{html.escape(name)}: {_fmt(value)} {html.escape(unit)}"
        parts += [f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end" class="tk">'
                  f'{html.escape(name[:34])}</text>',
                  f'<rect x="{label_w}" y="{y + 2}" width="{width:.1f}" height="13" '
                  f'fill="{COLORS[k % len(COLORS)]}"><title>{tip}</title></rect>',
                  f'<text x="{label_w + width + 4:.1f}" y="{y + 12}" class="tk">{_fmt(value)}</text>']
    label = "; ".join(f"{n} {_fmt(v)}" for n, v in rows)
    return Markup(f'<svg class="chart" viewBox="0 0 {W} {height}" role="img" '
                  f'aria-label="{html.escape(title)}: {html.escape(label)}">{"".join(parts)}</svg>')
