"""The experiment report as the CLI and the API serve it: the config of one experiment, its log
(from ``since`` its start), the analysis and, on request, the HTML page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.experiment_config import Experiment
from core.settings import Settings
from services.experiments.analysis import analyse, logged
from services.experiments.source import KAFKA, read_log


def find(experiments: Sequence[Experiment], name: str) -> Experiment:
    """The experiment called ``name``; KeyError naming the known ones."""
    for exp in experiments:
        if exp.name == name:
            return exp
    known = ", ".join(e.name for e in experiments) or "none"
    raise KeyError(f"no experiment {name!r} in the settings (known: {known})")


def summary(experiments: Sequence[Experiment], now: float) -> list[dict[str, Any]]:
    return [{"name": e.name, "layer": e.layer, "kind": e.kind, "start": e.start, "end": e.end,
             "running": e.active(now), "traffic": e.traffic, "offset": e.offset,
             "arms": [{"name": a.name, "share": a.share, "overrides": a.overrides.changed()} for a in e.arms]}
            for e in experiments]


def experiment_report(exp: Experiment, settings: Settings, source: str = KAFKA,
                      looks: int = 20) -> dict[str, Any]:
    """The analysis of ``exp`` over the log read from ``source`` (from the experiment's start)."""
    records = read_log(source, settings, since=exp.start)
    return analyse(logged(records), exp, looks=looks)
