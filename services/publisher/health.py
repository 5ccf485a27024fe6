"""A tiny HTTP server for ``/healthz``, ``/readyz`` and ``/metrics`` of a non-HTTP process."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from core.errors import StartupError
from services.localstack import port_is_free


class HealthServer:
    def __init__(self, host: str, port: int, ready: Callable[[], bool], registry: CollectorRegistry) -> None:
        if port and not port_is_free(port, host):
            raise StartupError(f"publisher.metrics_port {port} on {host} is already in use")
        self._ready, self._registry = ready, registry
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.startswith("/metrics"):
                    self._send(200, generate_latest(outer._registry), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    self._send(200, b'{"status":"ok"}', "application/json")
                elif self.path.startswith("/readyz"):
                    ok = outer._ready()
                    self._send(200 if ok else 503, json.dumps({"ready": ok}).encode(), "application/json")
                else:
                    self._send(404, b"{}", "application/json")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        return Handler

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
