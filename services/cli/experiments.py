"""``streamrec experiments list | report NAME``: the experiments of the settings file, and the report
of one of them from the event stream (JSON, and an HTML page with plots)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from core.settings import ConfigError, load_settings

app = typer.Typer(help="A/B experiments and interleavings: list them, report on one.", no_args_is_help=True)
ConfigOpt = typer.Option(None, "--config", "-c", help="streamrec TOML file")


def _print(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


@app.command("list")
def list_cmd(config: Path | None = ConfigOpt) -> None:
    """The experiments declared in the settings file, and whether each is running now."""
    from services.experiments.report import summary

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    _print(summary(settings.experiments, time.time()))


@app.command("report")
def report_cmd(name: str = typer.Argument(..., help="experiment name (see `streamrec experiments list`)"),
               source: str = typer.Option("kafka", help="'kafka' (the topics) or a JSON-lines log file/dir"),
               json_out: Path = typer.Option(Path("experiment_report.json"), "--json"),
               html_out: Path | None = typer.Option(None, "--html", help="also write the HTML report here"),
               looks: int = typer.Option(20, min=1, max=200, help="points in time of the sequential tests"),
               config: Path | None = ConfigOpt) -> None:
    """Per-arm metrics with always-valid tests, the sample-ratio check (or the interleaving preference)."""
    from services.experiments.html import render
    from services.experiments.report import experiment_report, find

    try:
        settings = load_settings(config)
        exp = find(settings.experiments, name)
        report = experiment_report(exp, settings, source, looks)
    except (ConfigError, KeyError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    json_out.write_text(json.dumps(report, indent=2, default=str))
    if html_out is not None:
        html_out.write_text(render(report))
    typer.echo("\n".join(report.get("decisions") or ["nothing declared yet"]))
    typer.echo(f"wrote {json_out}" + (f" and {html_out}" if html_out else ""))
