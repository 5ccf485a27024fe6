"""Authentication and authorisation of the feed API: every /v1 route x {no key, wrong scope, right scope,
another tenant's key}, with the status each must get; the ops port; revoked keys; JWTs.

Kafka is a recording stand-in here (the routes' writes are checked by topic: a tenant's records land
on its own topics); the key store is a real SQLite control database made by ``AccessStore``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from serving_events import click, memory_state

from core.settings import Settings
from funnel.pipeline import Pipeline
from services.api.app import create_app
from services.api.security import route_scopes
from services.metadata.access_store import AccessStore
from services.publisher.kafka_io import CProducer

CATS = {i: [f"cat{j % 2}"] for j, i in enumerate("abcde")}
NOW = time.time()
EVENT = {"event_id": "e1", "user_id": "u1", "item_id": "a", "type": "click", "timestamp": NOW}
ITEM = {"title": "t", "created_at": NOW - 100}


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # the route's path template
    url: str
    scope: str
    ok: int  # status with the right scope (and with another tenant's key: its own namespace)
    body: Any = None


CASES = [
    Case("GET", "/v1/feed/{user_id}", "/v1/feed/u1?n=3", "feed:read", 200),
    Case("POST", "/v1/events", "/v1/events", "events:write", 202, EVENT),
    Case("GET", "/v1/items/{item_id}/similar", "/v1/items/a/similar", "feed:read", 200),
    Case("PUT", "/v1/items/{item_id}", "/v1/items/z", "catalog:write", 202, ITEM),
    Case("PUT", "/v1/items", "/v1/items", "catalog:write", 202, [{**ITEM, "item_id": "z"}]),
    Case("PUT", "/v1/users/{user_id}", "/v1/users/u9", "catalog:write", 202, {"segment": "s"}),
    Case("PUT", "/v1/users", "/v1/users", "catalog:write", 202, [{"user_id": "u9"}]),
    Case("DELETE", "/v1/users/{user_id}", "/v1/users/u1", "catalog:write", 202),
    Case("DELETE", "/v1/items/{item_id}", "/v1/items/a", "catalog:write", 202),
    Case("GET", "/v1/users/{user_id}/export", "/v1/users/u1/export", "admin", 200),
    Case("GET", "/v1/experiments", "/v1/experiments", "admin", 200),
    Case("GET", "/v1/experiments/{name}/report", "/v1/experiments/nope/report", "admin", 404),
    Case("GET", "/v1/experiments/{name}/report.html", "/v1/experiments/nope/report.html", "admin", 404),
]
WRONG = {"feed:read": "events:write", "events:write": "feed:read", "catalog:write": "feed:read",
         "admin": "catalog:write"}


@dataclass
class RecordingProducer:
    """A stand-in for confluent-kafka's Producer: records each record and reports it delivered."""

    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Callable[[Any, Any], None]) -> None:
        self.sent.append((topic, key, value))
        on_delivery(None, None)

    def list_topics(self, timeout: float | None = None) -> dict[str, Any]:
        return {}

    def poll(self, timeout: float = 0.0) -> int:
        time.sleep(timeout)
        return 0

    def flush(self, timeout: float | None = None) -> int:
        return 0


def connect(producer: CProducer, client: RecordingProducer) -> None:
    """``producer`` (the app's) sends through ``client``, connected."""
    producer._client = client
    producer._connected.set()


@dataclass
class Api:
    client: TestClient
    app: FastAPI
    keys: dict[str, str]  # scope (or "other:<scope>") -> key
    store: AccessStore
    producer: RecordingProducer


def make_api(tmp_path: Path, **auth: Any) -> Api:
    settings = Settings(data_dir=str(tmp_path), auth={"enabled": True, **auth},
                        api={"queue_timeout_ms": 10_000.0})  # no shedding on a busy machine: not the topic
    store = AccessStore(f"sqlite:///{tmp_path / 'control.db'}")
    store.create_tenant("other")
    keys = {s: store.create_key("default", [s], name=s)[0] for s in WRONG}
    keys |= {f"other:{s}": store.create_key("other", [s])[0] for s in WRONG}

    def other_pipeline(s: Settings) -> tuple[Pipeline, Callable[[], None]]:
        return Pipeline(s, memory_state(s, {"x": ["cat9"], "y": ["cat9"]}, [click("u1", "x")])), lambda: None

    default = Pipeline(settings, memory_state(settings, CATS, [click("u1", "a"), click("u2", "b")]))
    app = create_app(settings, default, tenant_pipelines=other_pipeline, access=store)
    producer = RecordingProducer()
    connect(app.state.ctx.producer, producer)  # every tenant's context shares the app's producer
    return Api(TestClient(app), app, keys, store, producer)


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return make_api(tmp_path)


def _settled(api: Api) -> int:
    """The records sent once every open tenant's impression log handed its queue to the producer."""
    for _, ctx in api.app.state.tenants.opened():
        ctx.impressions.flush()
    return len(api.producer.sent)


def _call(api: Api, case: Case, key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return api.client.request(case.method, case.url, headers=headers, json=case.body)


def test_the_matrix_covers_every_v1_route_and_each_declares_a_scope(api: Api):
    routes = {k: v for k, v in route_scopes(api.app).items() if k[1].startswith("/v1")}
    assert routes == {(c.method, c.path): c.scope for c in CASES}
    spec = api.client.get("/openapi.json").json()
    for case in CASES:
        op = spec["paths"][case.path][case.method.lower()]
        assert {"401", "403", "429"} <= op["responses"].keys()
        assert f"Scope: `{case.scope}`" in op["description"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
def test_route_x_credential(api: Api, case: Case):
    none = _call(api, case, None)
    assert none.status_code == 401, none.text
    assert "missing API key" in none.json()["detail"]
    assert none.headers["WWW-Authenticate"].startswith("Bearer")
    assert _call(api, case, "sr_000000000000_" + "x" * 40).status_code == 401  # unknown key

    wrong = _call(api, case, api.keys[WRONG[case.scope]])
    assert wrong.status_code == 403, wrong.text
    assert f"lacks scope '{case.scope}'" in wrong.json()["detail"]

    before = _settled(api)
    right = _call(api, case, api.keys[case.scope])
    assert right.status_code == case.ok, right.text
    assert all(not t.startswith("other.") for t, _, _ in api.producer.sent[before:_settled(api)])

    before = len(api.producer.sent)
    other = _call(api, case, api.keys[f"other:{case.scope}"])
    assert other.status_code == case.ok, other.text
    sent = api.producer.sent[before:_settled(api)]
    assert all(t.startswith("other.") for t, _, _ in sent)  # its own topics only (impressions too)
    if case.ok == 202:
        assert len(api.producer.sent) > before


def test_admin_holds_every_scope_of_its_own_tenant(tmp_path: Path):
    api = make_api(tmp_path)
    admin = api.keys["admin"]
    assert api.client.get("/v1/feed/u1", headers={"X-API-Key": admin}).status_code == 200
    assert api.client.post("/v1/events", json=EVENT, headers={"X-API-Key": admin}).status_code == 202


def test_another_tenants_key_never_sees_this_tenants_data(api: Api):
    mine = api.client.get("/v1/feed/u2?n=5", headers={"X-API-Key": api.keys["feed:read"]}).json()
    theirs = api.client.get("/v1/feed/u2?n=5", headers={"X-API-Key": api.keys["other:feed:read"]}).json()
    assert {i["item_id"] for i in mine["items"]} <= set(CATS)
    assert {i["item_id"] for i in theirs["items"]} <= {"x", "y"}  # the other tenant's catalogue only
    export = api.client.get("/v1/users/u2/export", headers={"X-API-Key": api.keys["other:admin"]}).json()
    assert export["tenant"] == "other"


def test_ops_port_answers_probes_without_a_key_and_the_api_port_does_not(api: Api):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert api.client.get(path).status_code == 404  # not on the API port
        assert api.client.get(f"http://testserver:8081{path}").status_code == 200
    assert api.client.get("http://testserver:8081/v1/feed/u1").status_code == 404  # ops port: ops only


def test_a_revoked_key_is_refused_within_the_cache_ttl(tmp_path: Path):
    api = make_api(tmp_path, key_cache_ttl_s=0.0)
    key = api.keys["feed:read"]
    assert api.client.get("/v1/feed/u1", headers={"X-API-Key": key}).status_code == 200
    key_id = key.split("_")[1]
    assert api.store.revoke(key_id)
    resp = api.client.get("/v1/feed/u1", headers={"X-API-Key": key})
    assert resp.status_code == 401 and "revoked" in resp.json()["detail"]


def test_keys_are_stored_hashed_and_never_logged(api: Api, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    key = api.keys["feed:read"]
    api.client.get("/v1/feed/u1", headers={"X-API-Key": key})
    api.client.get("/v1/feed/u1", headers={"X-API-Key": key + "x"})
    secret = key.split("_", 2)[2]
    assert secret not in caplog.text
    assert secret.encode() not in (Path(api.store.url.removeprefix("sqlite:///"))).read_bytes()


def _jwks(tmp_path: Path) -> tuple[Any, Path]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    return private, path


def test_jwt_from_the_configured_issuer(tmp_path: Path):
    private, jwks = _jwks(tmp_path)
    api = make_api(tmp_path, jwt_issuer="https://login.test/", jwks_file=str(jwks))

    def token(**claims: Any) -> str:
        body = {"iss": "https://login.test/", "sub": "svc", "tenant": "default", "scope": "feed:read",
                "exp": int(time.time()) + 60, **claims}
        return jwt.encode(body, private, algorithm="RS256", headers={"kid": "k1"})

    def feed(tok: str) -> int:
        return api.client.get("/v1/feed/u1", headers={"Authorization": f"Bearer {tok}"}).status_code

    assert feed(token()) == 200
    assert feed(token(scope="events:write")) == 403
    assert feed(token(iss="https://evil.test/")) == 401
    assert feed(token(exp=int(time.time()) - 10)) == 401
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"iss": "https://login.test/", "tenant": "default", "scope": "feed:read",
                         "exp": int(time.time()) + 60}, other, algorithm="RS256", headers={"kid": "k1"})
    assert feed(forged) == 401


@pytest.mark.parametrize("page", ["/console/models", "/console/experiments"])
def test_console_pages_need_a_key_of_the_operators_tenant(api: Api, page: str):
    assert api.client.get(page).status_code == 401
    assert api.client.get(page, headers={"X-API-Key": api.keys["feed:read"]}).status_code == 200
    assert api.client.get(page, headers={"X-API-Key": api.keys["other:admin"]}).status_code == 403
