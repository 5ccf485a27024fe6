"""``streamrec train | index | drift run | models list|promote|rollback | jobs list``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from core.settings import Settings, load_settings

app = typer.Typer(help="Model lifecycle: retrain, index, drift, registry.", no_args_is_help=True)
drift_app = typer.Typer(help="Drift monitor.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
jobs_app = typer.Typer(help="Job runs.", no_args_is_help=True)
app.add_typer(drift_app, name="drift")
app.add_typer(models_app, name="models")
app.add_typer(jobs_app, name="jobs")

ConfigOpt = typer.Option(None, "--config", "-c", help="streamrec TOML file")
KindOpt = typer.Option("two_tower", "--kind", "-k", help="model kind: two_tower or ranker")
console = Console()


def _settings(config: Path | None) -> Settings:
    return load_settings(config)


def _lifecycle(config: Path | None) -> Any:
    from services.scheduler.jobs import Lifecycle

    return Lifecycle(_settings(config))


def _ts(value: float | None) -> str:
    import datetime as dt

    return "-" if value is None else dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command()
def train(config: Path | None = ConfigOpt) -> None:
    """Train now: fit, evaluate on the recent holdout, promote through the gate (then re-index)."""
    out = _lifecycle(config).train("manual")
    if out is None:
        raise typer.Exit(1)
    if out.skipped:
        console.print(f"training skipped (run {out.run_id})")
    for d in out.decisions:
        console.print(f"{d.kind} {d.version}: {'PROMOTED' if d.promoted else 'not promoted'} - {d.reason}")


@app.command()
def index(config: Path | None = ConfigOpt) -> None:
    """Rebuild the FAISS index from the active item tower over the current catalogue."""
    out = _lifecycle(config).index("manual")
    if out is None:
        raise typer.Exit(1)
    console.print(f"index {out.version or '-'}: {out.item_count} items, "
                  f"recall {out.recall:.4f} - {out.reason}")
    if out.version is not None and not out.published:
        raise typer.Exit(1)


@drift_app.command("run")
def drift_run(config: Path | None = ConfigOpt) -> None:
    """Compare recent serving data with the training reference; retrain when it drifted."""
    out = _lifecycle(config).drift("manual")
    if out is None or out.result is None:
        console.print(f"drift check skipped: {out.skipped if out else 'already running'}")
        return
    for check in out.result.checks:
        console.print(f"{check.name:36s} {check.value:8.4f}  (threshold {check.threshold:.3f})"
                      f"{'  DRIFT' if check.crossed else ''}")
    console.print(f"report #{out.report_id}; retrain run: {out.triggered_run_id or '-'}")


@models_app.command("list")
def models_list(kind: str | None = typer.Option(None, "--kind", "-k"), config: Path | None = ConfigOpt,
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Model versions with status, metrics and the promotion decision."""
    from services.metadata import MetadataStore

    rows = MetadataStore(_settings(config).database_url).models(kind)
    if as_json:
        typer.echo(json.dumps([{"kind": m.kind, "version": m.version, "status": m.status,
                                "metrics": m.metrics, "reason": m.reason, "checksum": m.checksum}
                               for m in rows], default=str))
        return
    table = Table("kind", "version", "status", "metrics", "created", "reason")
    for m in rows:
        table.add_row(m.kind, m.version, m.status, json.dumps(m.metrics), _ts(m.created_at), m.reason)
    console.print(table)


def _reindex_if_tower(kind: str, config: Path | None) -> None:
    if kind == "two_tower":
        index(config)


@models_app.command("promote")
def models_promote(version: str, kind: str = KindOpt, config: Path | None = ConfigOpt) -> None:
    """Make VERSION the active model of its kind (serving hot-swaps to it)."""
    from services.artifacts import open_store, parse_version
    from services.metadata import MetadataStore
    from services.trainer.promotion import promote

    settings = _settings(config)
    version = f"{parse_version(version):06d}"
    meta = MetadataStore(settings.database_url)
    if meta.get_model(kind, version) is None:
        console.print(f"no {kind} version {version} in the registry")
        raise typer.Exit(1)
    promote(open_store(settings.artifacts_url), meta, kind, version, "manual promote")
    console.print(f"{kind} {version} is active")
    _reindex_if_tower(kind, config)


@models_app.command("rollback")
def models_rollback(kind: str = KindOpt, config: Path | None = ConfigOpt) -> None:
    """Re-activate the previously active version of KIND."""
    from services.artifacts import open_store
    from services.metadata import MetadataStore
    from services.trainer.promotion import rollback

    settings = _settings(config)
    try:
        version = rollback(open_store(settings.artifacts_url), MetadataStore(settings.database_url), kind)
    except KeyError as exc:
        console.print(str(exc.args[0]))
        raise typer.Exit(1) from None
    console.print(f"{kind} rolled back to {version}")
    _reindex_if_tower(kind, config)


@jobs_app.command("list")
def jobs_list(job: str | None = typer.Option(None, "--job"), limit: int = typer.Option(30, "--limit"),
              config: Path | None = ConfigOpt) -> None:
    """Recent job runs: start, end, outcome, error."""
    from services.metadata import MetadataStore

    table = Table("id", "job", "trigger", "started", "ended", "outcome", "error")
    for r in MetadataStore(_settings(config).database_url).jobs(job, limit):
        table.add_row(str(r.id), r.job, r.trigger, _ts(r.started_at), _ts(r.ended_at), r.outcome,
                      r.error or "")
    console.print(table)
