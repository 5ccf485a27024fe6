"""A command group whose sub-commands are imported only when invoked (click's lazy-loading pattern).

Some areas pull in heavy libraries (Feast alone takes seconds to import), so ``streamrec up`` must
not pay for ``streamrec features``. ``--help`` still lists everything, each with its help text, read
from the area's source (:func:`listed_help`) instead of importing it; an area whose text cannot be
read that way is imported. Typer vendors its own click, so the types come from typer, not from the
``click`` package.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

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


def listed_help(module_name: str, name: str, as_group: bool) -> str | None:
    """The help text ``load_command`` would give ``name``, read from the module's source: the ``help``
    of ``app = typer.Typer(...)`` (``as_group``), of a typer mounted with ``app.add_typer(x, name=...)``,
    or the ``help`` or docstring of the function under ``@app.command(...)`` (the only one, when the
    module's app holds one command). None when the source does not say it plainly."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    typers, mounted, commands = _helps(ast.parse(Path(spec.origin).read_text()))
    if as_group:
        return typers.get("app")
    found = commands.get(name) or mounted.get(name)
    if found is None and len(commands) == 1 and not mounted:
        found = next(iter(commands.values()))
    return found


Helps = dict[str, str | None]


def _helps(tree: ast.AST) -> tuple[Helps, Helps, Helps]:
    """(typer variable -> help, mounted name -> help, command name -> help) of one module."""
    typers: Helps = {}
    mounted: Helps = {}
    commands: Helps = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                and isinstance(node.value, ast.Call) and _is_call(node.value, "Typer"):
            typers[node.targets[0].id] = _keyword(node.value, "help")
        elif isinstance(node, ast.Call) and _is_call(node, "add_typer", on="app") and node.args \
                and isinstance(node.args[0], ast.Name) and isinstance(_keyword(node, "name"), str):
            mounted[str(_keyword(node, "name"))] = typers.get(node.args[0].id)
        elif isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and _is_call(deco, "command", on="app"):
                    first = deco.args[0] if deco.args else None
                    given = first.value if isinstance(first, ast.Constant) else None
                    cmd = str(given) if given else node.name.replace("_", "-")
                    commands[cmd] = _keyword(deco, "help") or ast.get_docstring(node)
    return typers, mounted, commands


def _is_call(node: ast.AST, attr: str, on: str | None = None) -> bool:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute) or node.func.attr != attr:
        return False
    return on is None or (isinstance(node.func.value, ast.Name) and node.func.value.id == on)


def _keyword(call: ast.Call, name: str) -> Any:
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


class LazyGroup(TyperGroup):
    """Subclasses set ``lazy``: command name -> (module, mounted as a group?)."""

    lazy: Mapping[str, tuple[str, bool]] = {}
    _listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in self.lazy:
            module_name, as_group = self.lazy[cmd_name]
            text = listed_help(module_name, cmd_name, as_group) if self._listing else None
            if text is not None:  # only listed in a help page: never invoked
                return TyperCommand(cmd_name, help=text)
            return load_command(module_name, cmd_name, as_group)
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
