"""Entry point of the ``streamrec`` command.

Sub-command groups live in their own modules (one per area) and are mounted here, so areas never
edit each other's files. A module that is absent or fails to import is reported, not hidden.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="streamrec: streaming recommendations, Kafka in, feeds out.", no_args_is_help=True)

# (module, attribute, group name or None to merge commands at top level)
_GROUPS: list[tuple[str, str, str | None]] = [
    ("services.cli.stack", "app", None),          # up, demo, produce, feeds
    ("services.cli.schemas", "app", "schemas"),
    ("services.cli.bench", "app", "bench"),
    ("services.cli.features", "app", "features"),
    ("services.cli.lifecycle", "app", None),      # train, index, drift, models, jobs
    ("services.cli.evaluate", "app", None),       # eval
]


def _mount() -> None:
    for module_name, attr, group in _GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        sub = getattr(module, attr)
        if group is None:
            app.registered_commands.extend(sub.registered_commands)
            app.registered_groups.extend(sub.registered_groups)
        else:
            app.add_typer(sub, name=group)


_mount()

if __name__ == "__main__":
    app()
