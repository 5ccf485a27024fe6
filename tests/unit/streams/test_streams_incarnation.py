"""The topic-id guard: the first id the broker reports for a topic is its incarnation; another id
(or the topic gone) trips it; no answer is not a change; one lookup serves every batch that
arrived before it started."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from core.errors import BrokerUnavailable
from streams.incarnation import NULL_TOPIC_ID, IncarnationGuard, incarnated


class Broker:
    def __init__(self, ids: dict[str, str | None]) -> None:
        self.ids, self.lookups, self.down = ids, 0, False

    def __call__(self, topics: Sequence[str]) -> Mapping[str, str | None]:
        self.lookups += 1
        if self.down:
            raise BrokerUnavailable("connection refused")
        return {t: self.ids.get(t) for t in topics}


class Clock:
    """Stands still unless ``tick`` (then every reading moves it on by 1 ms)."""

    def __init__(self, tick: float = 0.0) -> None:
        self.t, self.tick = 100.0, tick

    def __call__(self) -> float:
        self.t += self.tick
        return self.t


def guard(broker: Broker, clock: Clock | None = None) -> tuple[IncarnationGuard, list[str]]:
    trips: list[str] = []
    return IncarnationGuard(["a", "b"], broker, trips.append, clock or Clock(tick=0.001)), trips


def test_same_ids_pass_and_a_new_id_or_a_deleted_topic_trips() -> None:
    broker = Broker({"a": "id-a1", "b": "id-b1"})
    g, trips = guard(broker)
    assert asyncio.run(g.ids(0.0)) == {"a": "id-a1", "b": "id-b1"}
    assert asyncio.run(g.check()) and not trips
    broker.ids["a"] = "id-a2"
    asyncio.run(g.check())
    assert len(trips) == 1 and "id-a1 -> id-a2" in trips[0]
    g2, trips2 = guard(Broker({"a": "x", "b": "y"}))
    asyncio.run(g2.check())
    g2.lookup = Broker({"a": "x", "b": None})  # type: ignore[assignment]
    asyncio.run(g2.check())
    assert trips2 and "deleted" in trips2[0]


def test_no_answer_is_not_a_change() -> None:
    broker = Broker({"a": "id-a", "b": "id-b"})
    g, trips = guard(broker)
    asyncio.run(g.check())
    broker.down = True
    assert asyncio.run(g.check()) is False
    with pytest.raises(BrokerUnavailable):
        asyncio.run(g.ids(float("inf")))
    assert not trips and g.known == {"a": "id-a", "b": "id-b"}


def test_a_lookup_covers_batches_that_arrived_before_it_started() -> None:
    broker, clock = Broker({"a": "id-a", "b": "id-b"}), Clock()
    g, _ = guard(broker, clock)
    asyncio.run(g.ids(clock.t))
    asyncio.run(g.ids(clock.t - 5))  # a batch that arrived before the last lookup started
    assert broker.lookups == 1
    clock.t += 0.001
    asyncio.run(g.ids(clock.t))  # arrived after: needs its own lookup
    assert broker.lookups == 2


def test_a_topic_not_created_yet_or_without_ids_is_not_fenced() -> None:
    g, trips = guard(Broker({"a": None, "b": NULL_TOPIC_ID}))
    assert asyncio.run(g.ids(0.0)) == {} and not trips
    assert incarnated("t", None) == "t" and incarnated("t", "42") == "t@42"
