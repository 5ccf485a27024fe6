"""The feed API's HTTP server: ``python -m services.api`` (the Deployment's command) runs uvicorn with
loop and http left on "auto", which resolve to uvloop and httptools when they are installed, and the
runtime lock installs both (feast requires ``uvicorn[standard]``). Without them uvicorn silently falls
back to the pure-Python h11 protocol on asyncio's loop: in-process, a feed request through the whole
app then cost ~0.69-0.73 ms of server CPU instead of ~0.59-0.61 ms (issue 13)."""

from __future__ import annotations

import re
from pathlib import Path

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LOCK = Path(__file__).resolve().parents[3] / "deploy" / "requirements.lock"


async def _app(scope: object, receive: object, send: object) -> None:  # pragma: no cover - never served
    return None


def test_uvicorn_auto_resolves_to_httptools_and_uvloop():
    config = uvicorn.Config(_app, loop="auto", http="auto")
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    factory = config.get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_the_runtime_lock_pins_both():
    lock = LOCK.read_text()
    for name in ("uvloop", "httptools", "uvicorn"):
        assert re.search(rf"^{name}==\S+ \\$", lock, re.M), f"{name} is not in the runtime lock"
