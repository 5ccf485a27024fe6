"""The CLI imports an area only when one of its commands runs, and still lists every command."""

import subprocess
import sys

PROBE = """
import sys
from typer.testing import CliRunner
from services.cli.main import app
result = CliRunner().invoke(app, {args!r})
assert result.exit_code == 0, result.output
print("\\n".join(sorted(m for m in sys.modules if m.split(".")[0] in ("feast", "torch", "faust"))))
print("OUTPUT", result.output)
"""


def _run(args: list[str]) -> tuple[set[str], str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    modules, _, output = out.partition("OUTPUT")
    return {m.split(".")[0] for m in modules.split()}, output


def test_a_light_command_does_not_import_heavy_areas():
    heavy, output = _run(["schemas", "check"])
    assert "in sync" in output
    assert heavy == set(), f"`streamrec schemas check` imported {heavy}"


def test_help_lists_every_area_and_commands_resolve_to_their_own_help():
    heavy, output = _run(["--help"])
    assert heavy == set(), f"`streamrec --help` imported {heavy}"  # help text is read from the source
    for name in ("up", "demo", "produce", "feeds", "train", "index", "drift", "models", "jobs", "eval",
                 "schemas", "features", "bench"):
        assert f" {name} " in output, name
    _, models = _run(["models", "--help"])
    assert "rollback" in models and "promote" in models
    heavy, bench = _run(["bench", "--help"])
    assert heavy == set(), f"`streamrec bench --help` imported {heavy}"
    assert "Run the ingest benchmark" in bench, bench  # a benchmark's own help text, from its source
    assert all(f" {b} " in bench for b in ("ingest", "features", "serve", "train"))
