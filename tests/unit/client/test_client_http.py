"""StreamrecClient against the real feed API app in-process (through the TestClient's transport), and
its retry policy on a scripted transport."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from streamrec.client import ApiError, Interaction, InvalidEvent, ItemUpsert, StreamrecClient, UserUpsert

from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.pipeline import Pipeline
from services.api.app import create_app


@pytest.fixture
def api() -> StreamrecClient:
    settings = Settings()
    test_client = TestClient(create_app(settings, Pipeline(settings, MemoryOnline(settings))))
    return StreamrecClient("http://testserver", transport=test_client._transport, retries=0)  # type: ignore[attr-defined]


def test_feed_and_similar_parse_the_apis_answers(api: StreamrecClient):
    feed = api.feed("alice", n=5, device="ios")
    assert feed.user_id == "alice" and [it.rank for it in feed.items] == list(range(len(feed.items)))
    similar = api.similar("i 1?&n=9#x", n=3)  # one path segment, whatever the id holds ('/' aside)
    assert similar.item_id == "i 1?&n=9#x" and similar.items == []


def test_writes_are_validated_before_sending_and_refusals_carry_the_detail(api: StreamrecClient):
    with pytest.raises(InvalidEvent):
        api.put_item(ItemUpsert(item_id="i1", created_at=-1.0))
    future = ItemUpsert(item_id="i1", created_at=time.time() + 86400)  # the schema cannot see skew
    with pytest.raises(ApiError) as caught:
        api.put_item(future)
    assert caught.value.status == 422 and caught.value.detail["reason"] == "future_created_at"
    with pytest.raises(ApiError) as caught:  # valid, but no Kafka behind this app
        api.send_events([Interaction(user_id="u", item_id="i", type="click")])
    assert caught.value.status == 503
    with pytest.raises(ApiError, match="503"):
        api.put_users([UserUpsert(user_id="u1"), UserUpsert(user_id="u2")])
    with pytest.raises(ApiError, match="PUT /v1/users: 503"):  # no path route takes an id with '/'
        api.put_user(UserUpsert(user_id="org/u1"))


def _scripted(answers: list[httpx.Response | Exception], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handle)


def test_transient_failures_are_retried_with_backoff_and_retry_after():
    seen: list[httpx.Request] = []
    waits: list[float] = []
    answers: list[httpx.Response | Exception] = [
        httpx.ConnectError("refused"), httpx.Response(503, headers={"retry-after": "1.5"}),
        httpx.Response(429), httpx.Response(202, json={"accepted": 2})]
    client = StreamrecClient("http://x", transport=_scripted(answers, seen), retries=3, backoff_s=0.1,
                             sleep=waits.append)
    events = [Interaction(user_id="u", item_id="i", type="click", event_id=f"e{k}") for k in range(2)]
    assert client.send_events(events) == 2
    assert len(seen) == 4 and waits[1] == 1.5 and 0.05 <= waits[0] <= 0.1 and 0.1 <= waits[2] <= 0.4
    bodies = {json.dumps(json.loads(r.content)) for r in seen}
    assert len(bodies) == 1, "every retry resends the same events (same event ids)"


def test_client_errors_are_not_retried_and_retries_end():
    seen: list[httpx.Request] = []
    not_found = httpx.Response(404, json={"detail": "no"})
    client = StreamrecClient("http://x", transport=_scripted([not_found], seen), sleep=lambda s: None)
    with pytest.raises(ApiError) as caught:
        client.feed("u1")
    assert (caught.value.status, caught.value.detail, len(seen)) == (404, "no", 1)
    client = StreamrecClient("http://x", transport=_scripted([httpx.ReadTimeout("slow")] * 3, seen),
                             retries=2, sleep=lambda s: None)
    with pytest.raises(ApiError, match="no response"):
        client.feed("u1")
    assert len(seen) == 4
