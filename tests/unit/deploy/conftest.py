"""Deploy test fixtures: kustomize renders (kubectl's built-in kustomize) and the checkov tool venv."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

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


@pytest.fixture(scope="session")
def rendered() -> dict[str, str]:
    return {name: kustomize_build(DEPLOY / "k8s" / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def resources(rendered: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {name: [d for d in yaml.safe_load_all(text) if d] for name, text in rendered.items()}


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"].startswith(name))]


@pytest.fixture(scope="session")
def checkov() -> Path:
    exe = CHECKOV_VENV / "bin" / "checkov"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True, timeout=120)
        subprocess.run([str(CHECKOV_VENV / "bin" / "pip"), "install", "-q", f"checkov=={CHECKOV_VERSION}"],
                       check=True, timeout=600)
    return exe
