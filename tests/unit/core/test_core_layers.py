"""The import-layer contracts in pyproject.toml must pass on the repo and fail on a violation."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LINT = Path(sys.executable).parent / "lint-imports"


def _write_config(dest: Path) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["[importlinter]\nroot_packages =\n    " + "\n    ".join(config["root_packages"]),
             f"include_external_packages = {config['include_external_packages']}\n"]
    for i, contract in enumerate(config["contracts"]):
        lines.append(f"[importlinter:contract:{i}]")
        for key, value in contract.items():
            if isinstance(value, list):
                value = "\n    " + "\n    ".join(value)
            lines.append(f"{key} = {value}")
        lines.append("")
    (dest / ".importlinter").write_text("\n".join(lines))


def _tree(tmp: Path, imports: dict[str, str]) -> Path:
    for pkg in ("core", "iokit", "streams", "feature_store", "models", "services"):
        (tmp / pkg).mkdir()
        (tmp / pkg / "__init__.py").write_text(imports.get(pkg, ""))
    _write_config(tmp)
    return tmp


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--config", ".importlinter"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd)}, timeout=120)


@pytest.mark.parametrize(
    "imports",
    [
        {"core": "import services\n"},                 # contracts importing a process
        {"models": "import feature_store\n"},          # same-level capabilities
        {"services": "import streams\n"},              # same-level processes
        {"models": "import redis\n"},                  # models must stay pure
        {"iokit": "import feature_store\n"},          # I/O helpers importing a capability
        {"core": "import iokit\n"},                   # contracts importing the I/O helpers
    ],
)
def test_a_violation_fails_the_check(tmp_path: Path, imports: dict[str, str]):
    result = _lint(_tree(tmp_path, imports))
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and "0 broken" not in result.stdout, result.stdout


def test_downward_imports_pass(tmp_path: Path):
    ok = {"services": "import models\nimport core\n", "streams": "import feature_store\n",
          "models": "import iokit\n", "iokit": "import core\n"}
    result = _lint(_tree(tmp_path, ok))
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout, result.stdout
