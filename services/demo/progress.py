"""The live progress table of ``streamrec demo`` (rich)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table


@dataclass
class Snapshot:
    elapsed_s: float
    remaining_s: float
    produced: int
    events_per_s: float
    processed: int
    dead_lettered: int
    feeds: int
    users_with_feed: int
    p50_ms: float | None
    phase: str


def render(s: Snapshot) -> Table:
    table = Table(title=f"streamrec demo - {s.phase}", show_header=False, min_width=48)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("elapsed / remaining", f"{s.elapsed_s:5.0f}s / {max(0.0, s.remaining_s):4.0f}s"),
        ("events produced", f"{s.produced:,}"),
        ("events/s", f"{s.events_per_s:,.0f}"),
        ("events processed (worker)", f"{s.processed:,}"),
        ("dead-lettered (DLQ)", f"{s.dead_lettered:,}"),
        ("feeds published", f"{s.feeds:,}"),
        ("users with a feed", f"{s.users_with_feed:,}"),
        ("event->feed p50", "-" if s.p50_ms is None else f"{s.p50_ms:,.0f} ms"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table
