"""PUT /v1/items[/{id}] and PUT /v1/users[/{id}] refuse what the worker would dead-letter, with a 422
that names the field (or the record and the limit), before anything is produced. Without Kafka a
valid request is a 503 (the valid writes are tested on the real broker: test_serving_catalog_kafka)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.pipeline import Pipeline
from services.api.app import create_app


@pytest.fixture
def client() -> TestClient:
    settings = Settings(api={"max_body_bytes": 64 * 1024, "max_batch_events": 5})
    return TestClient(create_app(settings, Pipeline(settings, MemoryOnline(settings))),
                      raise_server_exceptions=False)


def _item(**over: Any) -> dict[str, Any]:
    return {"item_id": "i1", "title": "A", "categories": ["news"], "created_at": time.time() - 60, **over}


def _user(**over: Any) -> dict[str, Any]:
    return {"user_id": "u1", "attributes": {"country": "fr"}, "segment": "new", **over}


def _errors(resp: Any) -> list[dict[str, Any]]:
    assert resp.status_code == 422, resp.text
    return json.loads(resp.text, parse_constant=lambda c: pytest.fail(f"non-JSON literal {c}"))["detail"]


def _put(client: TestClient, path: str, body: str) -> Any:
    return client.put(path, content=body, headers={"content-type": "application/json"})


def test_valid_records_pass_validation_and_wait_for_kafka(client: TestClient):
    assert client.put("/v1/items/i1", json=_item()).status_code == 503
    assert client.put("/v1/items/i1", json={"created_at": 1.7e9}).status_code == 503  # id from the path
    assert client.put("/v1/items", json=[_item(), _item(item_id="i2")]).status_code == 503
    assert client.put("/v1/users/u1", json=_user()).status_code == 503
    assert client.put("/v1/users", json=[_user(), _user(user_id="u2")]).status_code == 503


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/items/i1", {"title": "no created_at"}, "created_at"),
    ("/v1/items/i1", _item(created_at=-5), "created_at"),
    ("/v1/items/i1", _item(categories="news"), "categories"),
    ("/v1/items/i1", _item(colour="red"), "colour"),
    ("/v1/items/i1", _item(schema_version=2), "schema_version"),
    ("/v1/users/u1", _user(attributes={"age": [3]}), "attributes"),
    ("/v1/users/u1", _user(segment=7), "segment"),
    ("/v1/users/u1", _user(nickname="x"), "nickname"),
])
def test_invalid_record_is_422_naming_the_field(client: TestClient, path: str, body: dict[str, Any],
                                                field: str):
    errors = _errors(client.put(path, json=body))
    assert errors[0]["loc"][:2] == ["body", field], errors


def test_an_id_that_differs_from_the_path_is_422_on_the_id(client: TestClient):
    errors = _errors(client.put("/v1/items/i1", json=_item(item_id="other")))
    assert errors[0]["loc"] == ["body", "item_id"] and "path" in errors[0]["msg"]
    assert _errors(client.put("/v1/users/u1", json=_user(user_id="u2")))[0]["loc"] == ["body", "user_id"]


def test_invalid_record_in_a_batch_names_its_index_and_field(client: TestClient):
    errors = _errors(client.put("/v1/items", json=[_item(), _item(item_id="")]))
    assert errors[0]["loc"] == ["body", 1, "item_id"]
    errors = _errors(client.put("/v1/users", json=[_user(), {"segment": "x"}]))
    assert errors[0]["loc"] == ["body", 1, "user_id"] and errors[0]["type"] == "missing"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/items/i1", '{"created_at": 1.7e9, "timestamp": %s}', "timestamp"),
    ("/v1/items/i1", '{"created_at": %s}', "created_at"),
    ("/v1/items/i1", '{"created_at": 1.7e9, "attributes": {"price": %s}}', "attributes"),
    ("/v1/users/u1", '{"attributes": {"score": %s}}', "attributes"),
])
def test_non_finite_numbers_are_422_naming_the_field(client: TestClient, literal: str, path: str, body: str,
                                                     field: str):
    errors = _errors(_put(client, path, body % literal))
    assert any(e["loc"][1] == field and e["type"] == "finite_number" for e in errors), errors


def test_times_outside_the_workers_skew_bounds_are_422_with_its_reason(client: TestClient):
    now = time.time()
    resp = client.put("/v1/items/i1", json=_item(created_at=now + 3600))
    assert resp.status_code == 422 and resp.json()["detail"]["reason"] == "future_created_at"
    resp = client.put("/v1/users", json=[_user(), _user(user_id="u2", timestamp=now - 90 * 86400)])
    detail = resp.json()["detail"]
    assert resp.status_code == 422 and (detail["index"], detail["reason"]) == (1, "stale_timestamp")
    resp = client.put("/v1/items", json=[_item(timestamp=now + 3600)])
    assert resp.status_code == 422 and resp.json()["detail"]["reason"] == "future_timestamp"


def test_batch_and_record_limits(client: TestClient):
    resp = client.put("/v1/items", json=[_item(item_id=f"i{k}") for k in range(6)])
    assert resp.status_code == 422 and resp.json()["detail"]["reason"] == "batch_too_long"
    assert "api.max_batch_events" in resp.json()["detail"]["detail"]
    big = _item(text="x" * (64 * 1024 - 100))  # fits the body limit, not the record limit
    resp = client.put("/v1/items/i1", json=big)
    assert resp.status_code == 422 and resp.json()["detail"]["reason"] == "oversized"
    resp = client.put("/v1/items/i1", json=_item(text="x" * 70_000))
    assert resp.status_code == 413 and "api.max_body_bytes" in resp.json()["detail"]


def test_the_wrong_shape_is_422(client: TestClient):
    assert _errors(client.put("/v1/items", json=_item()))[0]["loc"] == ["body"]
    assert _errors(client.put("/v1/items/i1", json=[_item()]))[0]["loc"] == ["body"]
