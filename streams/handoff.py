"""A batch's Feast rows and feed triggers, handed off to a child process.

Building and pushing Feast rows and producing the feed triggers took ~28 % of the worker's event loop
(py-spy at b979cb5, paced at 6,000 ev/s), on the thread that also plans and applies the batches: the
apply lane waited for CPU while its Redis round trips were already back. Here the worker only sends
each applied batch's compact part (per user, the state bytes its plan wrote, or None; the items
touched; per user, the newest event time to trigger) through a pipe to ``python -m
streams.handoff_child``, which owns its own Redis client and Kafka producer and does what
``processor._rows_then_triggers`` did: rows coalesced over ``feast.push_interval_ms``
(``sinks.FeatureRows``), then the batch's triggers, delivered. The call returns once the child
reports both done, so a batch's offsets are still committed only after its rows and triggers are
durable; an error the child reports (or its death) is raised here, retryable or not as the original
was, and the batch's follow-up is retried as before (a new child is started if needed). The child
exits when its input closes: the worker stopped or was killed.

Frames are a 4-byte length and a pickle, both ways: ``(seq, users, items, triggers)`` in,
``(seq, error)`` out (``error``: None, or ``(retryable, text)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import struct
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import StoreUnavailable
from core.settings import Settings

log = logging.getLogger(__name__)
HEAD = struct.Struct("<I")
CLOSE_S = 5.0


class FollowUpFailed(RuntimeError):
    """The child reported an error that is not worth retrying (the worker exits without commit)."""


def frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEAD.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Any | None:
    """The next frame's object; None at the end of the stream."""
    try:
        head = await reader.readexactly(HEAD.size)
        return pickle.loads(await reader.readexactly(HEAD.unpack(head)[0]))
    except asyncio.IncompleteReadError:
        return None


class Handoff:
    """The worker's side: ``await handoff(users, items, triggers)`` returns once the child wrote the
    rows and delivered the triggers."""

    def __init__(self, settings: Settings, argv: Sequence[str] = ("-m", "streams.handoff_child")) -> None:
        self.settings, self.argv = settings, tuple(argv)  # the child: sys.executable + argv
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._seq = 0

    async def start(self) -> None:
        if self._proc is None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, *self.argv, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE)
            assert self._proc.stdin is not None
            self._proc.stdin.write(frame(self.settings))
            self._reader = asyncio.ensure_future(self._read(self._proc))

    async def __call__(self, users: Mapping[str, bytes | None], items: Sequence[str],
                       triggers: Mapping[str, float]) -> None:
        await self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._seq += 1
        done = self._pending[self._seq] = asyncio.get_running_loop().create_future()
        proc.stdin.write(frame((self._seq, users, items, triggers)))
        try:
            await proc.stdin.drain()
        except (ConnectionError, BrokenPipeError) as exc:
            self._pending.pop(self._seq, None)
            raise ConnectionError(f"handoff child gone: {exc}") from exc
        await done

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while (msg := await read_frame(proc.stdout)) is not None:
            seq, error = msg
            fut = self._pending.pop(seq, None)
            if fut is None or fut.done():
                continue
            if error is None:
                fut.set_result(None)
            else:
                retryable, text = error
                fut.set_exception(StoreUnavailable(text) if retryable else FollowUpFailed(text))
        code = await proc.wait()
        if self._proc is proc:  # not closed: died
            log.warning("handoff child exited (%s); its pending batches are retried", code)
            self._proc = None
        self._fail_pending(ConnectionError(f"handoff child exited with {code}"))

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()

    async def close(self) -> None:
        """Close the child's input (it exits) and wait for it, bounded; kill it past that."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), CLOSE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=1.0)
        self._fail_pending(ConnectionError("handoff closed"))
