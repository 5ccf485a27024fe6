"""Feed API over an in-process state: validation 422s, OpenAPI, metrics, similar items."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from services.api.app import create_app
from services.pipeline import InMemoryState, ItemInfo, Pipeline, UserState


@pytest.fixture
def client() -> TestClient:
    state = InMemoryState(
        users={"u1": UserState("u1", recent=["a"], seen={"a"}, n_interactions=1)},
        popularity={"all": {"a": 5.0, "b": 4.0, "c": 3.0, "d": 2.0, "e": 1.0}},
        covis={"a": {"c": 2.0, "d": 1.0}},
        catalog={i: ItemInfo(i, [f"cat{j % 2}"], created_at=1.0) for j, i in enumerate("abcde")})
    settings = Settings()
    return TestClient(create_app(settings, Pipeline(settings, state)))


def _event(**over: object) -> dict[str, object]:
    ev = {"event_id": "e1", "user_id": "u1", "item_id": "a", "type": "click", "timestamp": time.time()}
    ev.update(over)
    return ev


def test_feed_and_seen_filter(client: TestClient):
    body = client.get("/v1/feed/u1", params={"n": 3}).json()
    ids = [it["item_id"] for it in body["items"]]
    assert "a" not in ids and len(ids) == 3 and body["model_version"] == "none"
    first = body["items"][0]
    assert {"source", "scores", "explore", "propensity", "rules"} <= first.keys()


@pytest.mark.parametrize("params", [{"n": 0}, {"n": 10_000}, {"n": "x"}])
def test_feed_bad_n_is_422(client: TestClient, params: dict[str, object]):
    assert client.get("/v1/feed/u1", params=params).status_code == 422


@pytest.mark.parametrize(("body", "needle"), [
    (_event(type="teleport"), "type"),
    ({k: v for k, v in _event().items() if k != "item_id"}, "item_id"),
    (_event(timestamp=time.time() + 86400), "future_timestamp"),
    (_event(propensity=2.0), "propensity"),
    (_event(extra="x"), "extra"),
])
def test_bad_events_are_422_with_reason(client: TestClient, body: dict[str, object], needle: str):
    resp = client.post("/v1/events", json=body)
    assert resp.status_code == 422 and needle in resp.text


def test_valid_event_without_kafka_is_503_not_500(client: TestClient):
    assert client.post("/v1/events", json=[_event()]).status_code == 503


def test_similar_openapi_metrics(client: TestClient):
    sim = client.get("/v1/items/a/similar", params={"n": 2}).json()
    assert [it["item_id"] for it in sim["items"]] == ["c", "d"] and sim["items"][0]["source"] == "covisit"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/feed/{user_id}", "/v1/events", "/v1/items/{item_id}/similar"} <= paths.keys()
    assert client.get("/docs").status_code == 200
    client.get("/v1/feed/u1")
    assert "streamrec_api_feeds_total" in client.get("/metrics").text
