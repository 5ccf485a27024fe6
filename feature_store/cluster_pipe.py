"""``RedisPipe``'s interface on a Redis Cluster: the packed commands of one call are split by the hash
slot of their key and sent to each slot's master (one pipelined round trip per node, over that node's
own ``RedisPipe``), and the replies come back in the caller's order. A ``MOVED``/``ASK`` reply (the
cluster resharded) refreshes the slot map and resends those commands once.

Used by the Feast fast reader (``reader.FastFeatureReader``) when ``redis.url`` is a
``redis+cluster://`` URL: Feast's entity keys carry no hash tags, so the HMGETs of one request spread
over every node.
"""

from __future__ import annotations

import threading
from typing import Any

from redis.crc import key_slot

from core.errors import StoreUnavailable
from feature_store.redis_pipe import RedisPipe, pack
from feature_store.redis_url import RedisEndpoint, parse

_REDIRECT = ("MOVED ", "ASK ")


def split(packed: bytes) -> list[tuple[bytes, bytes]]:
    """RESP-packed commands -> (routing key, the command's bytes) each. The key is the first
    argument, or for EVAL/EVALSHA the first declared key (none: an empty key, slot 0)."""
    out, i = [], 0
    while i < len(packed):
        start = i
        end = packed.index(b"\r\n", i)
        n = int(packed[i + 1:end])
        i, args = end + 2, []
        for _ in range(n):
            end = packed.index(b"\r\n", i)
            size = int(packed[i + 1:end])
            args.append(packed[end + 2:end + 2 + size])
            i = end + 4 + size
        out.append((_key(args), packed[start:i]))
    return out


def _key(args: list[bytes]) -> bytes:
    if args and args[0].upper() in (b"EVAL", b"EVALSHA"):
        return args[3] if len(args) > 3 and int(args[2]) > 0 else b""
    return args[1] if len(args) > 1 else b""


class ClusterPipe:
    def __init__(self, url: str, connect_timeout_s: float, socket_timeout_s: float) -> None:
        self._ep = parse(url)
        self._connect_timeout, self._timeout = connect_timeout_s, socket_timeout_s
        self._pipes: dict[tuple[str, int], RedisPipe] = {}
        self._slots: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def _pipe(self, addr: tuple[str, int]) -> RedisPipe:
        with self._lock:
            pipe = self._pipes.get(addr)
            if pipe is None:
                pipe = self._pipes[addr] = RedisPipe(_node_url(self._ep, addr), self._connect_timeout,
                                                     self._timeout)
            return pipe

    def refresh(self) -> None:
        last: Exception | None = None
        for addr in [*self._ep.nodes, *self._pipes]:
            try:
                (reply,) = self._pipe(addr).execute(pack(b"CLUSTER", b"SLOTS"), 1)
            except StoreUnavailable as exc:
                last = exc
                continue
            slots: list[tuple[str, int]] = [("", 0)] * 16384
            for start, end, master, *_ in reply:
                host = master[0].decode() or addr[0]
                for s in range(int(start), int(end) + 1):
                    slots[s] = (host, int(master[1]))
            self._slots = slots
            return
        raise StoreUnavailable(f"no Redis Cluster node answered CLUSTER SLOTS: {last}")

    def execute(self, packed: bytes, n_replies: int, timeout_s: float | None = None) -> list[Any]:
        """Like ``RedisPipe.execute``; raises StoreUnavailable."""
        if not self._slots:
            self.refresh()
        cmds = split(packed)
        out: list[Any] = [None] * len(cmds)
        todo = list(range(len(cmds)))
        for attempt in range(2):
            redirected = self._round(cmds, todo, out, timeout_s)
            if not redirected:
                return out
            if attempt == 0:
                self.refresh()
            todo = redirected
        raise StoreUnavailable(f"redis cluster kept redirecting {len(todo)} commands")

    def _round(self, cmds: list[tuple[bytes, bytes]], todo: list[int], out: list[Any],
               timeout_s: float | None) -> list[int]:
        by_node: dict[tuple[str, int], list[int]] = {}
        for i in todo:
            by_node.setdefault(self._slots[key_slot(cmds[i][0])], []).append(i)
        redirected = []
        for addr, idx in by_node.items():
            try:
                replies = self._pipe(addr).execute(b"".join(cmds[i][1] for i in idx), len(idx), timeout_s)
            except StoreUnavailable as exc:  # RedisPipe raises on an error reply: MOVED/ASK among them
                if not any(r.strip() in str(exc) for r in _REDIRECT):
                    raise
                redirected += idx
                continue
            out_of = dict(zip(idx, replies, strict=True))
            for i, reply in out_of.items():
                out[i] = reply
        return redirected

    def close(self) -> None:
        for pipe in self._pipes.values():
            pipe.close()


def _node_url(ep: RedisEndpoint, addr: tuple[str, int]) -> str:
    node = RedisEndpoint([addr], False, ep.tls, 0, ep.username, ep.password, ep.tls_files)
    return node.single_url
