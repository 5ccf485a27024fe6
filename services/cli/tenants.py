"""``streamrec tenants create|list``: tenants (namespaces) in the control database."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from services.cli.keys import ConfigOpt, _fail, _settings, _store

app = typer.Typer(help="Tenants: namespaces of topics, keys, Redis keys, Feast project, models.",
                  no_args_is_help=True)


@app.command("create")
def create_tenant(name: str = typer.Argument(..., help="lowercase letters, digits and _"),
                  config: Path | None = ConfigOpt) -> None:
    """A tenant: its own topics, Redis keys, Feast project, files and models (core.tenancy)."""
    from core.tenancy import scoped
    from core.topics import Topics

    try:
        created = _store(config).create_tenant(name)
    except ValueError as exc:
        _fail(str(exc))
    s = scoped(_settings(config), name)
    typer.echo(json.dumps({"tenant": name, "created": created, "topics": Topics(s.kafka.topic_prefix).all(),
                           "redis_prefix": s.redis.key_prefix, "feast_project": s.feast.project,
                           "data_dir": str(s.data_dir)}, indent=2))


@app.command("list")
def list_tenants(config: Path | None = ConfigOpt) -> None:
    typer.echo(json.dumps(_store(config).tenants()))
