"""``streamrec keys create|list|revoke``: API keys with scopes, stored hashed (SHA-256) in the control
database (``auth.control_database_url``, else ``database.url``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from core.settings import ConfigError, Settings, load_settings

app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
ConfigOpt = typer.Option(None, "--config", "-c", help="streamrec TOML file")


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def _store(config: Path | None) -> Any:
    from core.tenancy import control_url
    from services.metadata.access_store import AccessStore

    return AccessStore(control_url(_settings(config)))


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


@app.command("create")
def create_key(scopes: list[str] = typer.Option(..., "--scope", "-s",
                                                help="feed:read | events:write | catalog:write | admin"),
               tenant: str = typer.Option("default", "--tenant", "-t"),
               name: str = typer.Option("", "--name", help="what the key is for (listed)"),
               config: Path | None = ConfigOpt) -> None:
    """A new key for a tenant: printed once, stored only as its SHA-256."""
    try:
        key, info = _store(config).create_key(tenant, scopes, name)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(json.dumps({"key": key, "key_id": info.key_id, "tenant": info.tenant,
                           "scopes": sorted(info.scopes)}))
    typer.echo("store the key now: it is not shown again", err=True)


@app.command("list")
def list_keys(tenant: str | None = typer.Option(None, "--tenant", "-t"),
              config: Path | None = ConfigOpt) -> None:
    """Every key's id, tenant, scopes and state (never the key)."""
    rows = [{"key_id": k.key_id, "tenant": k.tenant, "name": k.name, "scopes": sorted(k.scopes),
             "created_at": k.created_at, "revoked": k.revoked_at is not None}
            for k in _store(config).keys(tenant)]
    typer.echo(json.dumps(rows, indent=2))


@app.command("revoke")
def revoke_key(key_id: str = typer.Argument(..., help="the key id (see `streamrec keys list`)"),
               config: Path | None = ConfigOpt) -> None:
    """Revoke a key: refused by every API process within auth.key_cache_ttl_s."""
    if not _store(config).revoke(key_id):
        _fail(f"no active key {key_id!r}")
    typer.echo(f"revoked {key_id}")
