"""Ports remembered across restarts: ``streamrec up`` gives each component the port it had last time
when that port is still free, so addresses printed once stay valid."""

from __future__ import annotations

from pathlib import Path

from iokit.files import read_json, write_json_atomic
from iokit.net import LOOPBACK, choose_port


class PortBook:
    """Named ports in a JSON file (``{"api": 8080, "redis": 40123, ...}``).

    :meth:`choose` prefers an explicitly configured port, then the remembered one, then any free
    port, and remembers the result; :meth:`save` writes the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        raw = read_json(path, {})
        self.ports: dict[str, int] = {k: int(v) for k, v in raw.items()
                                      if isinstance(v, int)} if isinstance(raw, dict) else {}

    def remembered(self, name: str) -> int:
        return self.ports.get(name, 0)

    def choose(self, name: str, configured: int = 0, host: str = LOOPBACK) -> int:
        port = choose_port(configured, self.remembered(name), host=host)
        self.ports[name] = port
        return port

    def save(self) -> None:
        write_json_atomic(self.path, self.ports)
