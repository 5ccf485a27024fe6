"""Work handed off to a child process: the worker's side, the child's loop, and the frames between.

Building and pushing Feast rows and producing the feed triggers took ~28 % of the worker's event loop
(py-spy at b979cb5, paced at 6,000 ev/s), on the thread that also plans and applies the batches: the
apply lane waited for CPU while its Redis round trips were already back. Here the worker only sends
each applied batch's compact part (per user, the state bytes its plan wrote, or None; the items
touched; per user, the newest event time to trigger) through a pipe to ``python -m
streams.handoff_child``, which owns its own Redis client and Kafka producer and does what
``processor._rows_then_triggers`` did: rows coalesced over ``feast.push_interval_ms``
(``sinks.FeatureRows``), then the batch's triggers, delivered. The event archive goes the same way
(:class:`ChildLink`, to ``python -m streams.archive_child``: the records' bytes as consumed).

A call returns once the child reports its batch done, so a batch's offsets are still committed only
after its rows and triggers (or archive files) are durable; an error the child reports (or its death)
is raised here, retryable or not as the original was, and the batch's follow-up is retried as before
(a new child is started if needed). The child exits when its input closes: the worker stopped or was
killed.

Frames are a 4-byte length and a pickle, both ways: the settings, then ``(seq, *args)`` in (for the
handoff ``(seq, users, items, triggers)``), ``(seq, error)`` out (``error``: None, or
``(retryable, text)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from core.errors import StoreUnavailable
from core.settings import Settings
from streams.metrics import WorkerMetrics

log = logging.getLogger(__name__)
HEAD = struct.Struct("<I")
CLOSE_S = 5.0
Pipes = tuple[asyncio.StreamReader, asyncio.StreamWriter]


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


class ChildLink:
    """The worker's side of one child process: ``await link.request(*args)`` returns once the child
    answered for that frame. ``name`` names the child in the log and in ``metrics.child_exits``."""

    def __init__(self, settings: Settings, argv: Sequence[str], name: str,
                 metrics: WorkerMetrics | None = None) -> None:
        self.settings, self.argv, self.name = settings, tuple(argv), name  # the child: sys.executable + argv
        self.metrics = metrics
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

    async def request(self, *args: Any) -> None:
        await self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._seq += 1
        done = self._pending[self._seq] = asyncio.get_running_loop().create_future()
        proc.stdin.write(frame((self._seq, *args)))
        try:
            await proc.stdin.drain()
        except (ConnectionError, BrokenPipeError) as exc:
            self._pending.pop(self._seq, None)
            raise ConnectionError(f"{self.name} child gone: {exc}") from exc
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
            if self.metrics is not None:
                self.metrics.child_exits.labels(self.name).inc()
            log.warning("%s child exited (%s); its pending batches are retried", self.name, code)
            self._proc = None
        self._fail_pending(ConnectionError(f"{self.name} child exited with {code}"))

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()

    async def close(self) -> None:
        """Close the child's input (it finishes its batches and exits) and wait for it, bounded;
        kill it past that."""
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
        self._fail_pending(ConnectionError(f"{self.name} closed"))


class Handoff(ChildLink):
    """``await handoff(users, items, triggers)`` returns once the child wrote the rows and delivered
    the triggers."""

    def __init__(self, settings: Settings, argv: Sequence[str] = ("-m", "streams.handoff_child"),
                 metrics: WorkerMetrics | None = None) -> None:
        super().__init__(settings, argv, "handoff", metrics)

    async def __call__(self, users: Mapping[str, bytes | None], items: Sequence[str],
                       triggers: Mapping[str, float]) -> None:
        await self.request(users, items, triggers)


class ArchiveHandoff(ChildLink):
    """``await archive(base, rows, categories)`` returns once the child (``streams.archive_child``)
    wrote the parquet file that holds the rows (``(partition, offset, bytes)``, the records as
    consumed). The processor's ``archive``."""

    def __init__(self, settings: Settings, argv: Sequence[str] = ("-m", "streams.archive_child"),
                 metrics: WorkerMetrics | None = None) -> None:
        super().__init__(settings, argv, "archive", metrics)

    async def __call__(self, base: str, rows: Sequence[tuple[int, int, bytes]],
                       cats: Mapping[str, list[str]] | None) -> None:
        await self.request(base, rows, cats)


# ---- the child's side ---------------------------------------------------------------------------
async def serve(call: Callable[..., Awaitable[None]], msg: tuple[Any, ...], out: Any) -> None:
    """One frame: ``call(*args)`` done, then its answer (``(seq, None)`` or ``(seq, (retryable, text))``)."""
    from streams.kafka_errors import describe, is_retryable

    seq, *args = msg
    error: tuple[bool, str] | None = None
    try:
        await call(*args)
    except Exception as exc:  # noqa: BLE001 - reported to the worker, which retries or exits
        log.warning("batch %d failed: %s", seq, describe(exc))
        error = (is_retryable(exc), describe(exc))
    out.write(frame((seq, error)))


async def answer(inp: asyncio.StreamReader, out: asyncio.StreamWriter,
                 call: Callable[..., Awaitable[None]]) -> None:
    """Serve every frame until the input closes (frames concurrently), then the last ones, bounded."""
    tasks = set[asyncio.Task[None]]()
    while (msg := await read_frame(inp)) is not None:
        task = asyncio.ensure_future(serve(call, msg, out))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.wait(tasks, timeout=CLOSE_S) if tasks else None
    await out.drain()


async def pipes() -> Pipes:
    """stdin, and a private copy of stdout for the frames; fd 1 then points at stderr (the worker's
    log), so nothing else printed corrupts them."""
    loop = asyncio.get_running_loop()
    inp = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(inp), sys.stdin.buffer)
    raw_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, raw_out)
    return inp, asyncio.StreamWriter(transport, protocol, None, loop)


def child_main(run: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> None:
    """A child's entry point. The worker's process group gets its SIGTERM too: the child stays until
    the worker closes the pipe, after its drain has handed off the last batches (or it died)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def main() -> None:
        await run(*await pipes())

    asyncio.run(main())
