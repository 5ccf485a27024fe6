"""Health and metrics on a port of their own (``api.ops_port``), never on the API port.

:class:`OpsPort` sits in front of the app (plain ASGI): a request that arrived on the ops port sees
only ``/healthz``, ``/readyz`` and ``/metrics`` (no key needed: the port is for probes and the
scraper, and a NetworkPolicy admits only them); on any other port those paths are 404s. So a Service
can expose the API port alone. ``/metrics`` shows every open tenant's API metrics with a ``tenant``
label, then the limiter's.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import StartupError

OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
JSON = b"application/json"


class OpsPort:
    def __init__(self, app: ASGIApp, ops_port: int, ready: Callable[[], dict[str, Any]],
                 registry: CollectorRegistry) -> None:
        self.app, self.ops_port, self.ready, self.registry = app, ops_port, ready, registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        server = scope.get("server") or (None, None)
        if server[1] == self.ops_port:
            await _answer(send, *self._ops(scope["path"]))
        elif scope["path"] in OPS_PATHS:
            await _answer(send, 404, JSON, _json({"detail": f"{scope['path']} is served on the ops port "
                                                         "(api.ops_port) only"}))
        else:
            await self.app(scope, receive, send)

    def _ops(self, path: str) -> tuple[int, bytes, bytes]:
        if path == "/healthz":
            return 200, JSON, _json({"status": "ok"})
        if path == "/readyz":
            checks = self.ready()
            ok = all(v for v in checks.values() if isinstance(v, bool))
            return (200 if ok else 503), JSON, _json({"ready": ok, **checks})
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST.encode(), generate_latest(self.registry)
        return 404, JSON, _json({"detail": f"no route {path} on the ops port"})


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


async def _answer(send: Send, status: int, ctype: bytes, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def bind_ops_socket(host: str, port: int) -> socket.socket:
    """The ops port's listening socket (port 0: any free one); a busy port fails naming the setting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"api.ops_port {port} on {host}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock
