"""Feed API over an in-process state: validation 422s, OpenAPI, metrics, similar items."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from serving_events import click, memory_state

from core.settings import Settings
from funnel.pipeline import Pipeline
from services.api.app import create_app


@pytest.fixture
def client() -> TestClient:
    """u1 has clicked ``a``; three users clicked ``a`` and then ``c`` (two) or ``d`` (one); every item
    has clicks of its own."""
    covisits = [e for k, other in enumerate("ccd")
                for e in (click(f"co{k}", "a", 120), click(f"co{k}", other))]
    crowd = [click(f"crowd-{i}-{k}", i) for n, i in enumerate("abcde") for k in range(5 - n)]
    settings = Settings()
    state = memory_state(settings, {i: [f"cat{j % 2}"] for j, i in enumerate("abcde")},
                         [click("u1", "a"), *covisits, *crowd])
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
    lone = client.get("/v1/items/e/similar", params={"n": 5}).json()  # no co-visits: its category's popular
    assert [(it["item_id"], it["source"]) for it in lone["items"]] == [("a", "category"), ("c", "category")]
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/feed/{user_id}", "/v1/events", "/v1/items/{item_id}/similar"} <= paths.keys()
    assert client.get("/docs").status_code == 200
    client.get("/v1/feed/u1")
    assert "streamrec_api_feeds_total" in client.get("http://testserver:8081/metrics").text


def test_similar_by_category_finds_a_niche_category():
    """Items of a category far below the overall top still find each other."""
    settings = Settings()
    popular = [click(f"fan{k}-{j}", f"p{j}") for j in range(30) for k in range(3)]
    catalogue = {**{f"p{j}": ["pop"] for j in range(30)}, "n1": ["niche"], "n2": ["niche"]}
    state = memory_state(settings, catalogue, [*popular, click("x", "n1"), click("y", "n2")])
    client = TestClient(create_app(settings, Pipeline(settings, state)))
    sim = client.get("/v1/items/n1/similar", params={"n": 1}).json()
    assert [(it["item_id"], it["source"]) for it in sim["items"]] == [("n2", "category")]
