"""``streamrec bench <name>``: each benchmark lives in ``services/cli/bench_<name>.py`` as a typer app
with one command, and is mounted here under its name. Benchmarks print and write JSON."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import services.cli

app = typer.Typer(help="Benchmarks (JSON output). Slow measurements live here, not in tests.",
                  no_args_is_help=True)


def _mount() -> None:
    for info in sorted(pkgutil.iter_modules(services.cli.__path__), key=lambda m: m.name):
        if not info.name.startswith("bench_"):
            continue
        module = importlib.import_module(f"services.cli.{info.name}")
        sub: typer.Typer = module.app
        for command in sub.registered_commands:
            command.name = info.name.removeprefix("bench_")
            app.registered_commands.append(command)


_mount()
