"""A batch's Feast rows and feed triggers go to a child process (``streams.handoff``): the call returns
once the child answered for that batch; an error it reports comes back retryable or not as the
original was; a child that dies fails its pending batches with a retryable error and the next call
starts a new one. The child (``streams.handoff_child``) writes the rows before it produces the
triggers, and answers only after both. The processor hands off, per batch, the state bytes its plan
wrote (None for replayed users), the items touched and the newest event time per user."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from core.errors import StoreUnavailable
from core.events import FeedTrigger, Interaction, InteractionType, ItemUpsert
from core.settings import load_settings
from core.topics import Topics
from feature_store.online.writer import Applied
from feature_store.transforms import user_ts_us
from streams.decode import RawRecord, Skew
from streams.handoff import FollowUpFailed, Handoff, frame, read_frame, serve
from streams.handoff_child import Child
from streams.kafka_errors import is_retryable
from streams.metrics import WorkerMetrics
from streams.processor import BatchProcessor, Parsed

ROOT = Path(__file__).resolve().parents[3]
# A stand-in child: answers by the first user's id ("retry", "fatal", "die" or anything: done).
FAKE = f"""
import asyncio, os, sys
sys.path.insert(0, {str(ROOT)!r})
from streams.handoff import frame, read_frame
async def main():
    loop = asyncio.get_running_loop()
    inp = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(inp), sys.stdin.buffer)
    await read_frame(inp)  # the settings
    while (msg := await read_frame(inp)) is not None:
        seq, users, items, triggers = msg
        kind = next(iter(users), "")
        if kind == "die":
            os._exit(3)
        error = {{"retry": (True, "redis down"), "fatal": (False, "refused")}}.get(kind)
        sys.stdout.buffer.write(frame((seq, error)))
        sys.stdout.buffer.flush()
asyncio.run(main())
"""


def test_frames_round_trip() -> None:
    async def run() -> list[Any]:
        reader = asyncio.StreamReader()
        reader.feed_data(frame((1, {"u": b"x"}, ["i"], {"u": 2.0})) + frame("next"))
        reader.feed_eof()
        return [await read_frame(reader), await read_frame(reader), await read_frame(reader)]

    assert asyncio.run(run()) == [(1, {"u": b"x"}, ["i"], {"u": 2.0}), "next", None]


def test_answers_errors_and_a_dead_child() -> None:
    async def run() -> list[str]:
        h = Handoff(load_settings(), ("-c", FAKE))
        out = []
        for user in ("ok", "retry", "fatal", "die", "ok"):
            try:
                await asyncio.wait_for(h({user: None}, ["i1"], {user: 1.0}), 30)
                out.append("done")
            except Exception as exc:  # noqa: BLE001 - what the follow-up's retry loop sees
                out.append(f"{type(exc).__name__}:{is_retryable(exc)}")
        await h.close()
        return out

    assert asyncio.run(run()) == ["done", f"{StoreUnavailable.__name__}:True",
                                  f"{FollowUpFailed.__name__}:False", "ConnectionError:True", "done"]


class Rows:
    def __init__(self, log: list[str], fail: Exception | None = None) -> None:
        self.log, self.fail = log, fail

    async def __call__(self, users: Mapping[str, Any], items: Sequence[str]) -> None:
        await asyncio.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        unknown = [u for u, s in users.items() if s is None]
        decoded = [user_ts_us(s) for s in users.values() if s is not None]
        self.log.append(f"rows {sorted(users)} {list(items)} {unknown} {decoded}")


class Producer:
    """A ``Send``: logs the trigger, delivered 10 ms later."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def __call__(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        trig = FeedTrigger.model_validate_json(value)
        self.log.append(f"send {topic} {(key or b'').decode()} {trig.event_ts}")
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, fut.set_result, None)
        return fut


class Out:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def write(self, data: bytes) -> None:
        self.log.append(f"answer {pickle.loads(data[4:])}")


@pytest.mark.parametrize("fail", [None, ConnectionError("down"), ValueError("bad row")])
def test_the_child_writes_rows_then_triggers_then_answers(fail: Exception | None) -> None:
    from feature_store.transforms import UserState, encode_user

    log: list[str] = []
    child = Child("p-feed-triggers", Rows(log, fail), Producer(log))
    raw = encode_user(UserState("u1", ts_us=5))
    asyncio.run(serve(child, (7, {"u1": raw, "u2": None}, ["i1"], {"u1": 3.0}), Out(log)))  # type: ignore[arg-type]
    if fail is None:
        assert log == ["rows ['u1', 'u2'] ['i1'] ['u2'] [5]", "send p-feed-triggers u1 3.0",
                       "answer (7, None)"]
    else:
        assert log == [f"answer (7, ({isinstance(fail, ConnectionError)}, "
                       f"'{type(fail).__name__}: {fail}'))"]


def click(user: str, item: str, ts: float) -> Interaction:
    return Interaction(event_id=f"{user}-{item}-{ts}", user_id=user, item_id=item, type=InteractionType.CLICK,
                       timestamp=ts)


def test_the_processor_hands_off_to_the_child_state_bytes_items_and_triggers() -> None:
    """The worker's path, with the child's part run in process: rows get the states the plan wrote
    (decoded; None for a replayed user), the items touched; then one trigger per user, newest time."""
    from feature_store.transforms import UserState, encode_user

    log: list[str] = []
    child = Child("p-feed-triggers", Rows(log), Producer(log))
    proc = BatchProcessor(Topics("p-"), None, None, WorkerMetrics(), Skew(60, 60),  # type: ignore[arg-type]
                          handoff=child)
    new = [click("u1", "i2", 10.0), click("u1", "i1", 12.0), click("u2", "i1", 11.0)]
    old = [click("u3", "i3", 9.0)]
    rec = RawRecord("p-interactions", 0, 0, b"")
    parsed = Parsed([(rec, e) for e in new], [(rec, e) for e in old], [], {}, {})
    applied = Applied(user_bytes={"u1": encode_user(UserState("u1", ts_us=12)),
                                  "u2": encode_user(UserState("u2", ts_us=11))})
    asyncio.run(proc._rows_then_triggers("interactions", parsed, applied))
    asyncio.run(proc._rows_then_triggers("users", parsed, None))
    assert log == ["rows ['u1', 'u2', 'u3'] ['i1', 'i2', 'i3'] ['u3'] [12, 11]",
                   "send p-feed-triggers u1 12.0", "send p-feed-triggers u2 11.0",
                   "send p-feed-triggers u3 9.0"]


def test_item_batches_get_rows_and_no_triggers() -> None:
    log: list[str] = []
    proc = BatchProcessor(Topics("p-"), None, None, WorkerMetrics(), Skew(60, 60),  # type: ignore[arg-type]
                          handoff=Child("p-feed-triggers", Rows(log), Producer(log)))
    item = ItemUpsert(item_id="i9", categories=["c"], created_at=5.0, timestamp=5.0)
    parsed = Parsed([(RawRecord("p-items", 0, 0, b""), item)], [], [], {}, {})
    asyncio.run(proc._rows_then_triggers("items", parsed, None))
    assert log == ["rows [] ['i9'] [] []"]


class Feast:
    def __init__(self) -> None:
        self.writes: list[dict[str, list[dict[str, Any]]]] = []

    async def write(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.writes.append(rows)


def test_rows_decode_each_user_once_per_write_and_keep_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches handed off within one push interval get one Feast write; a user in several of them is
    decoded once, from the newest state bytes (by ts_us, whatever the order the batches came in)."""
    from core.features import USER_KEY, USER_REALTIME
    from feature_store import transforms as tf
    from streams.sinks import FeatureRows

    decoded: list[int] = []
    real = tf.decode_user
    def counted(raw: bytes) -> tf.UserState:
        decoded.append(user_ts_us(raw))
        return real(raw)

    monkeypatch.setattr(tf, "decode_user", counted)
    read: list[list[str]] = []

    async def states(users: Sequence[str], items: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        read.append(list(users))
        return {u: tf.UserState(u, ts_us=1) for u in users}, {}

    def raw(user: str, ts_us: int) -> bytes:
        return tf.encode_user(tf.UserState(user, ts_us=ts_us))

    feast = Feast()
    frames: list[tuple[Any, ...]] = [(1, {"u1": raw("u1", 5), "u2": None}, [], {}),
                                     (2, {"u1": raw("u1", 9)}, [], {}),
                                     (3, {"u1": raw("u1", 7), "u2": raw("u2", 4)}, [], {})]

    async def run() -> None:
        rows = FeatureRows(states, feast, tf.TransformParams(), interval_s=0.05)
        child = Child("p-feed-triggers", rows, Producer([]))
        await asyncio.gather(*(serve(child, f, Out([])) for f in frames))  # type: ignore[arg-type]
        await rows.close()

    asyncio.run(run())
    assert len(feast.writes) == 1 and read == [[]]
    written = feast.writes[0][USER_REALTIME.view]
    assert sorted((r[USER_KEY], r["_ts_us"]) for r in written) == [("u1", 9), ("u2", 4)]
    assert sorted(decoded) == [4, 9]
