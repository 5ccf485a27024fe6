"""A command group whose sub-commands are imported only when invoked (click's lazy-loading pattern).

Some areas pull in heavy libraries (Feast alone takes seconds to import), so ``streamrec up`` must
not pay for ``streamrec features``. ``--help`` still lists everything: listing imports them all.
Typer vendors its own click, so the types come from typer, not from the ``click`` package.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer._click.core import Command, Context


def load_command(module_name: str, name: str, as_group: bool) -> Command | None:
    """The command ``name`` from the typer ``app`` of ``module_name``.

    ``as_group``: the whole app is mounted under ``name``; otherwise ``name`` is one of its commands.
    """
    command = typer.main.get_command(importlib.import_module(module_name).app)
    if as_group or not isinstance(command, TyperGroup):
        command.name = name
        return command
    return command.get_command(typer.Context(command), name)


class LazyGroup(TyperGroup):
    """Subclasses set ``lazy``: command name -> (module, mounted as a group?)."""

    lazy: Mapping[str, tuple[str, bool]] = {}

    def list_commands(self, ctx: Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in self.lazy:
            module_name, as_group = self.lazy[cmd_name]
            return load_command(module_name, cmd_name, as_group)
        return super().get_command(ctx, cmd_name)
