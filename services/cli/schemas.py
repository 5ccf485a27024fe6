"""``streamrec schemas write|check``: the JSON Schemas of the wire records, checked in under core/schemas."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from core.events import json_schemas

app = typer.Typer(help="JSON Schemas of the event records.", no_args_is_help=True)
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "core" / "schemas"


def render() -> dict[str, str]:
    return {f"{name}.schema.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
            for name, schema in json_schemas().items()}


@app.command()
def write(out: Path = SCHEMA_DIR) -> None:
    """Regenerate the checked-in schema files."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
    typer.echo(f"wrote {len(render())} schemas to {out}")


@app.command()
def check(out: Path = SCHEMA_DIR) -> None:
    """Fail when a checked-in schema differs from the models."""
    stale = [n for n, t in render().items() if not (out / n).is_file() or (out / n).read_text() != t]
    if stale:
        typer.echo(f"stale schemas: {', '.join(stale)}; run `streamrec schemas write`", err=True)
        raise typer.Exit(1)
    typer.echo("schemas in sync")
