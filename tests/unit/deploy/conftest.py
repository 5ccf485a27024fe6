"""Deploy test fixtures: kustomize renders (kubectl's built-in kustomize) and the checkov tool venv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import CHECKOV_VENV, CHECKOV_VERSION, DEPLOY, OVERLAYS, kustomize_build


@pytest.fixture(scope="session")
def rendered() -> dict[str, str]:
    return {name: kustomize_build(DEPLOY / "k8s" / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def resources(rendered: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {name: [d for d in yaml.safe_load_all(text) if d] for name, text in rendered.items()}


@pytest.fixture(scope="session")
def checkov() -> Path:
    exe = CHECKOV_VENV / "bin" / "checkov"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True, timeout=120)
        subprocess.run([str(CHECKOV_VENV / "bin" / "pip"), "install", "-q", f"checkov=={CHECKOV_VERSION}"],
                       check=True, timeout=600)
    return exe
