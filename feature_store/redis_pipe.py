"""A minimal pipelined Redis transport for the serving read path.

redis-py packs every command in Python (~10 us each), and a Lua loop costs a script call per key on
the server; for 500 HMGETs per request both dominate. Here the caller hands over pre-packed RESP
commands (built once per entity and cached), they go out in ONE ``sendall`` and the replies are parsed
by hiredis in C. One socket per thread; any socket error or timeout closes it and raises
``core.errors.StoreUnavailable`` (bounded by ``connect_timeout_s`` + ``socket_timeout_s``); only a
kept-alive socket found closed is retried once on a fresh one. The next call reconnects.

Example:
    >>> pipe = RedisPipe("redis://127.0.0.1:6379/0", 0.5, 0.5)             # doctest: +SKIP
    >>> pipe.execute(pack(b"PING") + pack(b"PING"), 2)                       # doctest: +SKIP
    [b'PONG', b'PONG']
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis

from core.errors import StoreUnavailable
from core.settings import ConfigError
from feature_store.redis_url import parse


class _Closed(Exception):
    """The server closed the connection or answered with an error: drop the socket."""


def pack(*args: bytes) -> bytes:
    """One command in RESP2 wire format."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _left(sock: socket.socket, deadline: float) -> None:
    """Give the socket's next call what is left of the deadline (none left: a timeout now)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("redis round trip deadline passed")
    sock.settimeout(left)


class RedisPipe:
    """Pipelined request/replies over per-thread sockets."""

    def __init__(self, url: str, connect_timeout_s: float, socket_timeout_s: float) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
            raise ConfigError(["redis.url"], f"redis.url must look like redis://host:port/db, got {url!r}")
        self._addr = (parsed.hostname, parsed.port or 6379)
        self._tls = parse(url).ssl_context()  # None: no TLS
        self._handshake = self._handshake_commands(parsed.username, parsed.password, parsed.path)
        self._connect_timeout, self._timeout = connect_timeout_s, socket_timeout_s
        self._local = threading.local()

    @staticmethod
    def _handshake_commands(user: str | None, password: str | None, path: str) -> list[bytes]:
        cmds = []
        if password:
            auth = [unquote(user).encode()] if user else []
            cmds.append(pack(b"AUTH", *auth, unquote(password).encode()))
        db = path.lstrip("/")
        if db and db != "0":
            cmds.append(pack(b"SELECT", db.encode()))
        return cmds

    def execute(self, packed: bytes, n_replies: int, timeout_s: float | None = None) -> list[Any]:
        """Send ``packed`` (n commands) and return the n replies. Raises StoreUnavailable.

        ``timeout_s`` bounds the whole round trip (every send and receive together; default the
        socket timeout), so a request's read fits its latency budget however the reply arrives.
        A kept-alive socket the server has since closed is retried once on a fresh one (within the
        same deadline); a timeout or a failure on a fresh socket is not retried.
        """
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self._timeout)
        reused = getattr(self._local, "sock", None) is not None
        try:
            return self._roundtrip(packed, n_replies, deadline)
        except (BrokenPipeError, ConnectionResetError, _Closed) as exc:
            self.close()
            if not reused:
                raise self._unavailable(exc) from exc
        except OSError as exc:
            self.close()
            raise self._unavailable(exc) from exc
        try:
            return self._roundtrip(packed, n_replies, deadline)
        except (OSError, _Closed) as exc:
            self.close()
            raise self._unavailable(exc) from exc

    def _roundtrip(self, packed: bytes, n_replies: int, deadline: float) -> list[Any]:
        sock = self._socket(deadline)
        _left(sock, deadline)
        sock.sendall(packed)
        return self._read(sock, n_replies, deadline)

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"redis {self._addr[0]}:{self._addr[1]} unavailable: {exc}")

    def close(self) -> None:
        sock = getattr(self._local, "sock", None)
        self._local.sock = None
        if sock is not None:
            sock.close()

    def _socket(self, deadline: float | None = None) -> socket.socket:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is None:
            connect_s = self._connect_timeout if deadline is None else \
                min(self._connect_timeout, max(deadline - time.monotonic(), 1e-3))
            sock = socket.create_connection(self._addr, timeout=connect_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls:
                sock = self._tls.wrap_socket(sock, server_hostname=self._addr[0])
            sock.settimeout(self._timeout)
            self._local.sock = sock
            if self._handshake:
                sock.sendall(b"".join(self._handshake))
                self._read(sock, len(self._handshake))
        return sock

    @staticmethod
    def _read(sock: socket.socket, n: int, deadline: float | None = None) -> list[Any]:
        reader = hiredis.Reader()
        out: list[Any] = []
        while len(out) < n:
            if deadline is not None:
                _left(sock, deadline)
            data = sock.recv(1 << 20)
            if not data:
                raise _Closed("connection closed by server")
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                out.append(reply)
        if any(map(isinstance, out, itertools.repeat(Exception))):  # one C-level pass, not one per reply
            raise _Closed(f"redis error reply: {next(r for r in out if isinstance(r, Exception))}")
        return out
