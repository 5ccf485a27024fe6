"""What the console keeps per API process, built on its first page: the templates, the telemetry
source, the dead-letter reader and the registry connection. Nothing here runs before someone opens
the console."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from prometheus_client import generate_latest

from services.console import charts
from services.console.dlq import DeadLetters
from services.console.overview import PrometheusSource, ScrapeSource, Source
from services.console.telemetry import Scraper

if TYPE_CHECKING:
    from services.api.deps import ApiContext
    from services.metadata import MetadataStore

_lock = threading.Lock()


def templates() -> Environment:
    env = Environment(loader=PackageLoader("services.console", "templates"),
                      autoescape=select_autoescape(default=True), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(lines=charts.lines, bars=charts.bars, pair_bars=_pair_bars, numeric_keys=_numeric_keys,
                       metric_series=_metric_series, index_points=_index_points, drift_points=_drift_points)
    env.filters.update(ts=_ts, num=_num, ago=_ago)
    return env


class ConsoleState:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.env = templates()
        self.dead_letters = DeadLetters(ctx.settings, ctx.settings.console.dead_letters)
        self.scraper: Scraper | None = None

    @cached_property
    def source(self) -> Source:
        if self.settings.console.prometheus_url:
            return PrometheusSource(self.settings)
        registry = self.ctx.metrics.registry
        self.scraper = Scraper(self.settings, lambda: generate_latest(registry).decode())
        return ScrapeSource(self.scraper)

    @cached_property
    def meta(self) -> MetadataStore:
        from services.metadata import MetadataStore

        return MetadataStore(self.settings.database_url)  # migrates to head once, like every user

    def close(self) -> None:
        if self.scraper is not None:
            self.scraper.close()
        self.dead_letters.close()
        if "meta" in self.__dict__:
            self.meta.close()


def console_state(ctx: ApiContext, app_state: Any) -> ConsoleState:
    state = getattr(app_state, "console", None)
    if state is None:
        with _lock:
            state = getattr(app_state, "console", None)
            if state is None:
                state = app_state.console = ConsoleState(ctx)
    return state  # type: ignore[no-any-return]


def _pair_bars(values: dict[tuple[str, str], float], swap: bool = False) -> dict[str, float]:
    """(topic, partition) -> "topic[partition]"; with ``swap``, (topic, reason) -> "reason (topic)"."""
    return {(f"{b} ({a})" if swap else f"{a}[{b}]"): v for (a, b), v in values.items()}


def _numeric_keys(rows: list[Any]) -> list[str]:
    """The numeric metrics of model versions (``metrics`` dicts), sorted."""
    return sorted({k for r in rows for k, v in r.metrics.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)})


def _metric_series(rows: list[Any], names: list[str]) -> dict[str, list[tuple[float, float]]]:
    return {n: [(r.created_at, float(r.metrics[n])) for r in reversed(rows)
                if isinstance(r.metrics.get(n), int | float)] for n in names}


def _index_points(indexes: list[Any]) -> list[tuple[float, float]]:
    return [(i.created_at, float(i.recall)) for i in reversed(indexes)]


def _drift_points(reports: list[Any], stat: str) -> list[tuple[float, float]]:
    return [(r.created_at, float(r.metrics[stat])) for r in reversed(reports)
            if isinstance(r.metrics.get(stat), int | float)]


# ---- template filters ---------------------------------------------------------------------------
def _ts(value: float | None) -> str:
    import time

    return "-" if not value else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def _ago(value: float | None) -> str:
    import time

    if not value:
        return "-"
    s = max(0.0, time.time() - value)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
