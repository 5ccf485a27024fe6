"""Helpers shared by the deploy tests (a unique module name: test dirs have no __init__.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "prod")
CHECKOV_VERSION = "3.3.30"
# checkov pins packaging<24 and networkx<2.7, which would break the project venv: it gets its own.
CHECKOV_VENV = REPO / ".venv" / "tools" / f"checkov-{CHECKOV_VERSION}"


def kustomize_build(path: Path) -> str:
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize")
    if kustomize:
        cmd = [kustomize, "build", str(path)]
    elif kubectl:
        cmd = [kubectl, "kustomize", str(path)]
    else:
        pytest.fail("neither kustomize nor kubectl (with built-in kustomize) is on PATH")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
    return done.stdout


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"].startswith(name))]
