"""Liveness, readiness, Prometheus metrics and the run-now trigger on one small HTTP server.

GET /healthz, GET /readyz, GET /metrics, GET /jobs, POST /jobs/<name>/run (202, 404 unknown job).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class Controls:
    """What the HTTP layer may ask of the service."""

    def __init__(self, ready: Callable[[], tuple[bool, str]], run_now: Callable[[str], bool],
                 jobs: Callable[[], list[dict[str, Any]]]) -> None:
        self.ready, self.run_now, self.jobs = ready, run_now, jobs


def _handler(controls: Controls) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet access log
            return

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, data: Any) -> None:
            self._send(code, json.dumps(data, default=str).encode())

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path == "/healthz":
                self._json(200, {"status": "ok"})
            elif self.path == "/readyz":
                ok, why = controls.ready()
                self._json(200 if ok else 503, {"ready": ok, "detail": why})
            elif self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/jobs":
                self._json(200, controls.jobs())
            else:
                self._json(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            parts = self.path.strip("/").split("/")
            if len(parts) == 3 and parts[0] == "jobs" and parts[2] == "run":
                if controls.run_now(parts[1]):
                    self._json(202, {"job": parts[1], "status": "started"})
                else:
                    self._json(404, {"error": f"unknown job {parts[1]!r}"})
            else:
                self._json(404, {"error": f"no route {self.path}"})

    return Handler


class HealthServer:
    def __init__(self, host: str, port: int, controls: Controls) -> None:
        self.httpd = ThreadingHTTPServer((host, port), _handler(controls))
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="health")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
