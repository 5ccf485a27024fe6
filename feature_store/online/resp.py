"""A lean asyncio Redis client for the stream worker: pre-packed commands, pipelined, parsed by hiredis.

redis-py spends ~10-20 us of Python per pipelined command (command stack, packing, response
callbacks); the worker sends thousands per batch. Here a command is ``(slot, packed bytes)``
(``hiredis.pack_command``), a batch of them goes out in one write per node and the replies come back
in order. Several callers may share a connection: requests are answered first in, first out.

:class:`Single` talks to one server; :class:`Cluster` to a Redis Cluster: it reads the slot map
(``CLUSTER SLOTS``), sends each command to the master of its slot, all nodes at once, and follows
``MOVED`` (refreshing the map) and ``ASK`` redirections. Error replies are returned as
``hiredis.ReplyError`` values, never raised, except that a lost connection or a timeout raises
``ConnectionError``/``TimeoutError`` (the worker retries those) after closing the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import hiredis
from redis.crc import key_slot

from feature_store.redis_url import RedisEndpoint, parse

Command = tuple[int, bytes]  # (hash slot, packed command); the slot is ignored by Single
ReplyError = hiredis.ReplyError


def pack(*args: Any) -> bytes:
    """One command in RESP (str, bytes, int or float arguments)."""
    return hiredis.pack_command(args)  # type: ignore[arg-type]


def command(key: str | bytes | None, *args: Any) -> Command:
    """Pack a command whose routing key is ``key`` (None: any node)."""
    slot = key_slot(key.encode() if isinstance(key, str) else key) if key is not None else 0
    return slot, pack(*args)


def slot_of(key: str) -> int:
    return key_slot(key.encode())


class Target(Protocol):
    cluster: bool

    async def execute(self, cmds: Sequence[Command]) -> list[Any]: ...

    async def close(self) -> None: ...


class Connection:
    """One socket with FIFO pipelining."""

    def __init__(self, host: str, port: int, ep: RedisEndpoint, connect_timeout_s: float,
                 timeout_s: float) -> None:
        self.host, self.port, self.ep = host, port, ep
        self.connect_timeout_s, self.timeout_s = connect_timeout_s, timeout_s
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiters: deque[tuple[int, list[Any], asyncio.Future[list[Any]]]] = deque()
        self._connecting: asyncio.Lock | None = None

    async def execute(self, packed: bytes, n: int) -> list[Any]:
        if n == 0:
            return []
        await self._connect()
        assert self._writer is not None
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieved)
        self._waiters.append((n, [], fut))
        self._writer.write(packed)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.timeout_s)
        except TimeoutError:
            self._fail(TimeoutError(f"redis {self.host}:{self.port}: no reply within {self.timeout_s}s"))
            raise

    async def _connect(self) -> None:
        if self._writer is not None:
            return
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is None:
                await self._open()

    async def _open(self) -> None:
        ctx = self.ep.ssl_context()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=ctx), self.connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"redis {self.host}:{self.port} unreachable: {exc}") from exc
        self._writer = writer
        self._reader_task = asyncio.ensure_future(self._read_loop(reader))
        hello = _handshake(self.ep)
        if hello:
            replies = await self.execute(b"".join(hello), len(hello))
            bad = [r for r in replies if isinstance(r, ReplyError)]
            if bad:
                self._fail(ConnectionError(f"redis {self.host}:{self.port}: {bad[0]}"))
                raise ConnectionError(f"redis {self.host}:{self.port}: {bad[0]}")

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        try:
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    raise ConnectionError(f"redis {self.host}:{self.port} closed the connection")
                parser.feed(data)
                self._dispatch(parser)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every waiter gets it
            self._fail(exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc)))

    def _dispatch(self, parser: hiredis.Reader) -> None:
        while (reply := parser.gets()) is not False:
            n, got, fut = self._waiters[0]
            got.append(reply)
            if len(got) == n:
                self._waiters.popleft()
                if not fut.done():
                    fut.set_result(got)

    def _fail(self, exc: BaseException) -> None:
        writer, self._writer = self._writer, None
        task, self._reader_task = self._reader_task, None
        if writer is not None:
            writer.close()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        while self._waiters:
            _, _, fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(exc)

    async def close(self) -> None:
        self._fail(ConnectionError("closed"))


def _retrieved(fut: asyncio.Future[list[Any]]) -> None:
    """A connection failure fails every waiter; the one that timed out no longer awaits its future."""
    if not fut.cancelled():
        fut.exception()


def _handshake(ep: RedisEndpoint) -> list[bytes]:
    cmds = []
    if ep.password is not None:
        auth = (ep.username,) if ep.username else ()
        cmds.append(pack("AUTH", *auth, ep.password))
    if ep.db:
        cmds.append(pack("SELECT", ep.db))
    return cmds


class Single:
    """One Redis server."""

    cluster = False

    def __init__(self, ep: RedisEndpoint, connect_timeout_s: float, timeout_s: float) -> None:
        host, port = ep.nodes[0]
        self.conn = Connection(host, port, ep, connect_timeout_s, timeout_s)

    async def execute(self, cmds: Sequence[Command]) -> list[Any]:
        return await self.conn.execute(b"".join(c[1] for c in cmds), len(cmds))

    async def close(self) -> None:
        await self.conn.close()


class Cluster:
    """A Redis Cluster: each command goes to the master of its slot."""

    cluster = True
    MAX_REDIRECTS = 5

    def __init__(self, ep: RedisEndpoint, connect_timeout_s: float, timeout_s: float) -> None:
        self.ep, self.connect_timeout_s, self.timeout_s = ep, connect_timeout_s, timeout_s
        self._conns: dict[tuple[str, int], Connection] = {}
        self._slots: list[tuple[str, int]] = []
        self._refreshing: asyncio.Lock | None = None

    def _conn(self, addr: tuple[str, int]) -> Connection:
        conn = self._conns.get(addr)
        if conn is None:
            conn = self._conns[addr] = Connection(addr[0], addr[1], self.ep, self.connect_timeout_s,
                                                  self.timeout_s)
        return conn

    async def refresh(self) -> None:
        """Read the slot map from the first node that answers."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            last: BaseException | None = None
            for addr in [*self.ep.nodes, *self._conns]:
                try:
                    (reply,) = await self._conn(addr).execute(pack("CLUSTER", "SLOTS"), 1)
                except (ConnectionError, TimeoutError) as exc:
                    last = exc
                    continue
                if not isinstance(reply, ReplyError):
                    self._slots = _slot_map(reply, addr[0])
                    return
                last = ConnectionError(f"CLUSTER SLOTS on {addr}: {reply}")
            raise ConnectionError(f"no Redis Cluster node answered: {last}")

    async def execute(self, cmds: Sequence[Command]) -> list[Any]:
        if not self._slots:
            await self.refresh()
        out: list[Any] = [None] * len(cmds)
        todo = list(range(len(cmds)))
        for _ in range(self.MAX_REDIRECTS):
            redirected = await self._round(cmds, todo, out)
            if not redirected:
                return out
            await self.refresh()
            todo = redirected
        return out

    async def _round(self, cmds: Sequence[Command], todo: list[int], out: list[Any]) -> list[int]:
        by_node: dict[tuple[str, int], list[int]] = {}
        for i in todo:
            by_node.setdefault(self._slots[cmds[i][0]], []).append(i)
        replies = await asyncio.gather(*(self._conn(addr).execute(b"".join(cmds[i][1] for i in idx), len(idx))
                                         for addr, idx in by_node.items()))
        redirected = []
        for idx, rs in zip(by_node.values(), replies, strict=True):
            for i, reply in zip(idx, rs, strict=True):
                out[i] = reply
                if isinstance(reply, ReplyError) and str(reply).startswith(("MOVED ", "ASK ", "TRYAGAIN")):
                    if str(reply).startswith("ASK "):
                        out[i] = await self._ask(str(reply), cmds[i][1])
                        if not (isinstance(out[i], ReplyError) and str(out[i]).startswith("TRYAGAIN")):
                            continue
                    redirected.append(i)
        return redirected

    async def _ask(self, reply: str, packed: bytes) -> Any:
        host, _, port = reply.split()[2].rpartition(":")
        asking = pack("ASKING")
        return (await self._conn((host, int(port))).execute(asking + packed, 2))[1]

    async def close(self) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                await conn.close()


def _slot_map(reply: list[Any], fallback_host: str) -> list[tuple[str, int]]:
    slots: list[tuple[str, int]] = [("", 0)] * 16384
    for start, end, master, *_ in reply:
        host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
        addr = (host or fallback_host, int(master[1]))
        for s in range(int(start), int(end) + 1):
            slots[s] = addr
    return slots


def connect(url: str, connect_timeout_s: float, timeout_s: float) -> Single | Cluster:
    """The target ``redis.url`` names (see :mod:`feature_store.redis_url`)."""
    ep = parse(url)
    kind = Cluster if ep.cluster else Single
    return kind(ep, connect_timeout_s, timeout_s)
