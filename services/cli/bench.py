"""``streamrec bench <name>``: each benchmark lives in ``services/cli/bench_<name>.py`` as a typer app
with one command, and is mounted here under its name, imported only when it runs. Benchmarks print
and write JSON."""

from __future__ import annotations

import pkgutil

import typer

import services.cli
from services.cli.lazy import LazyGroup


class _Benchmarks(LazyGroup):
    lazy = {
        info.name.removeprefix("bench_"): (f"services.cli.{info.name}", False)
        for info in pkgutil.iter_modules(services.cli.__path__)
        if info.name.startswith("bench_")
    }


app = typer.Typer(cls=_Benchmarks, no_args_is_help=True,
                  help="Benchmarks (JSON output). Slow measurements live here, not in tests.")


@app.callback()
def _group() -> None:
    """Benchmarks (JSON output)."""
