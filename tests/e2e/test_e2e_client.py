"""The client round trip: the streamrec-client wheel, installed alone into a clean venv (its three
dependencies at the locked versions, nothing of the platform), runs the README's example against a
running stack (worker, publisher, API): it produces items and interactions, is refused a malformed
event locally, reads the feed the publisher made for the user from the feeds topic, and reads the
feed and similar items over HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from services.stack import PROCESSES, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
REPO = Path(__file__).resolve().parents[2]
PLATFORM = ("torch", "faust-streaming", "feast", "fastapi", "redis", "pydantic", "streamrec")

CHECK = """
import importlib.metadata as md, importlib.util, json, sys
from streamrec.client import FeedConsumer, StreamrecClient
kafka, api, prefix = sys.argv[1:4]
installed = sorted(d.metadata["Name"].lower() for d in md.distributions())
shadowed = [m for m in ("core", "services", "streams", "models", "funnel") if importlib.util.find_spec(m)]
with FeedConsumer(kafka, user_id="alice", topic_prefix=prefix, idle_timeout_s=5) as feeds:
    published = [f.item_ids for f in feeds]
with StreamrecClient(api) as client:
    served = client.feed("alice", n=5)
print(json.dumps({"installed": installed, "shadowed": shadowed, "published": published,
                  "served": served.item_ids, "user": served.user_id}))
"""


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    s = settings.model_copy(update={
        "rerank": settings.rerank.model_copy(update={"explore_slots": 0, "diversity": "none"}),
        "worker": settings.worker.model_copy(update={"content_model": False}),
    })
    specs = [p for p in PROCESSES if p.name in ("worker", "publisher", "api")]
    with Stack(s, processes=specs, ready_timeout_s=180, feast_apply=False) as started:
        yield started


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv holding the client wheel and its dependencies at the versions of the lock."""
    work = tmp_path_factory.mktemp("client")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(work),
          str(REPO / "client")])
    lock, dev_lock = REPO / "deploy" / "docker" / "lockfile.py", REPO / "deploy" / "requirements-dev.lock"
    constraints = _run([sys.executable, str(lock), "constraints", str(dev_lock)])
    (work / "constraints.txt").write_text(constraints)
    _run([sys.executable, "-m", "venv", str(work / "venv")])
    python = work / "venv" / "bin" / "python"
    wheel = next(work.glob("streamrec_client-*.whl"))
    _run([str(python), "-m", "pip", "install", "-q", "-c", str(work / "constraints.txt"), str(wheel)])
    return python


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_clean_env())
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _readme_example(kafka: str, api: str, prefix: str) -> str:
    text = (REPO / "client" / "README.md").read_text()
    code = re.search(r"## Example.*?```python\n(.*?)```", text, re.S)
    assert code is not None, "client/README.md has no python example"
    line = re.compile(r'^KAFKA, API, PREFIX = .*$', re.M)
    assert line.search(code[1]), "the example's first settings line changed"
    return line.sub(f"KAFKA, API, PREFIX = {kafka!r}, {api!r}, {prefix!r}", code[1])


def test_client_alone_round_trips_through_the_stack(stack: Stack, client_python: Path, tmp_path: Path):
    kafka, api = stack.settings.kafka.bootstrap_servers or "", stack.url("api")
    prefix = stack.settings.kafka.topic_prefix
    example = tmp_path / "example.py"
    example.write_text(_readme_example(kafka, api, prefix))
    out = _run([str(client_python), str(example)], cwd=tmp_path, timeout=240)
    assert "refused: value invalid_field" in out
    published = re.search(r"^published: (\[.*\])$", out, re.M)
    assert published is not None and json.loads(published[1].replace("'", '"')), out
    ranks = re.findall(r"^(\d+) song-\d+ \w+ ", out, re.M)
    assert ranks == [str(k) for k in range(len(ranks))] and len(ranks) == 5, out
    assert re.search(r"^similar to song-3: \[", out, re.M), out
    check = tmp_path / "check.py"
    check.write_text(CHECK)
    result = json.loads(_run([str(client_python), str(check), kafka, api, prefix], cwd=tmp_path))
    assert not result["shadowed"], "platform packages importable beside the client"
    assert not set(PLATFORM) & set(result["installed"]), result["installed"]
    assert {"streamrec-client", "kafka-python", "httpx", "jsonschema"} <= set(result["installed"])
    assert result["published"] and result["user"] == "alice"
    assert "song-7" not in result["served"], "the clicked item is not recommended again"
    assert set(result["served"]) <= {f"song-{k}" for k in range(20)}
