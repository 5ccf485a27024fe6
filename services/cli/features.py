"""``streamrec features apply | materialize | show user U | show item I``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from core.features import ALL_SERVICE
from core.settings import Settings, load_settings

app = typer.Typer(help="Feast feature store: registry, materialization, inspection.", no_args_is_help=True)
show_app = typer.Typer(help="Print the online features of one entity (JSON).", no_args_is_help=True)
app.add_typer(show_app, name="show")

ConfigOpt = typer.Option(None, "--config", "-c", help="streamrec TOML file")


def _settings(config: Path | None) -> Settings:
    return load_settings(config)


def _print(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@app.command("apply")
def apply_cmd(config: Path | None = ConfigOpt) -> None:
    """Register entities, feature views and feature services in the SQL registry."""
    settings = _settings(config)
    from feature_store.repository import apply as apply_definitions  # Feast: seconds to import

    store = apply_definitions(settings)
    views = sorted(v.name for v in store.list_feature_views())
    typer.echo(f"applied project {store.project!r}: {', '.join(views)}")


@app.command("materialize")
def materialize_cmd(
    config: Path | None = ConfigOpt,
    rebuild: bool = typer.Option(True, help="rebuild the batch sources from the archive first"),
) -> None:
    """Replay the archive into the offline parquet sources, then load the batch views online."""
    from feature_store.repository import materialize as materialize_views

    counts = materialize_views(_settings(config), rebuild=rebuild)
    _print({"rows_per_view": counts})


@show_app.command("user")
def show_user(user_id: str, config: Path | None = ConfigOpt) -> None:
    from feature_store.reader import FastFeatureReader

    _print(FastFeatureReader.from_settings(_settings(config), service=ALL_SERVICE).user_features(user_id))


@show_app.command("item")
def show_item(item_id: str, config: Path | None = ConfigOpt) -> None:
    from feature_store.reader import FastFeatureReader

    reader = FastFeatureReader.from_settings(_settings(config), service=ALL_SERVICE)
    _print(reader.item_features([item_id])[0])
