"""Entry point of the ``streamrec`` command.

Sub-command groups live in their own modules (one per area) and are imported only when their
command runs (see :mod:`services.cli.lazy`), so areas never edit each other's files and a light
command never pays for a heavy area's imports.
"""

from __future__ import annotations

import typer

from services.cli.lazy import LazyGroup


class _Commands(LazyGroup):
    # command name -> (module with a typer `app`, whether that app is mounted whole under the name)
    lazy = {
        **{name: ("services.cli.stack", False) for name in ("up", "status", "demo", "produce", "feeds")},
        **{name: ("services.cli.lifecycle", False) for name in ("train", "index", "drift", "models", "jobs")},
        "eval": ("services.cli.evaluate", False),
        "import": ("services.cli.importer", False),
        "schemas": ("services.cli.schemas", True),
        "features": ("services.cli.features", True),
        "bench": ("services.cli.bench", True),
        "experiments": ("services.cli.experiments", True),
        "ope": ("services.cli.ope", False),
        "keys": ("services.cli.keys", True),
        "tenants": ("services.cli.tenants", True),
        "forget": ("services.cli.forget", False),
    }


app = typer.Typer(cls=_Commands, help="streamrec: streaming recommendations, Kafka in, feeds out.",
                  no_args_is_help=True)


@app.callback()
def _root() -> None:
    """streamrec: streaming recommendations, Kafka in, feeds out."""


if __name__ == "__main__":
    app()
