"""``/healthz``, ``/readyz`` and ``/metrics`` for processes without a web app of their own (the
publisher, the scheduler), on one small threaded HTTP server. Extra GET routes and a POST action plug
in; the feed API serves the same paths from FastAPI and the worker from faust's web server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from core.errors import StartupError
from iokit import port_is_free

# Readiness: ready, or (ready, why) when there is a reason worth showing.
Ready = Callable[[], bool | tuple[bool, str]]
PostAction = Callable[[str], tuple[int, Any]]


class HealthServer:
    def __init__(self, host: str, port: int, ready: Ready, registry: CollectorRegistry = REGISTRY,
                 routes: Mapping[str, Callable[[], Any]] | None = None, post: PostAction | None = None,
                 setting: str = "health port") -> None:
        """``port`` 0 picks a free port; a busy one fails naming ``setting``."""
        if port and not port_is_free(port, host):
            raise StartupError(f"{setting} {port} on {host} is already in use")
        self._server = ThreadingHTTPServer((host, port), _handler(ready, registry, routes or {}, post))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _readiness(ready: Ready) -> tuple[int, dict[str, Any]]:
    state = ready()
    ok, why = state if isinstance(state, tuple) else (state, "")
    return (200 if ok else 503), ({"ready": ok, "detail": why} if why else {"ready": ok})


def _handler(ready: Ready, registry: CollectorRegistry, routes: Mapping[str, Callable[[], Any]],
             post: PostAction | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._json(200, {"status": "ok"})
            elif path == "/readyz":
                self._json(*_readiness(ready))
            elif path in routes:
                self._json(200, routes[path]())
            else:
                self._json(404, {"error": f"no route {path}"})

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            self._json(*(post(path) if post else (404, {"error": f"no route {path}"})))

        def _json(self, code: int, data: Any) -> None:
            self._send(code, json.dumps(data, default=str).encode(), "application/json")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet access log
            return

    return Handler
