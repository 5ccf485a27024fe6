"""schemathesis over the feed API's own OpenAPI, every /v1 operation: with a valid admin key, every check
schemathesis runs but three (see EXCLUDED): no server error, status codes, content types, headers and
bodies as documented; without a key, every answer a 401 or a refusal that comes before authentication
(routing, body parsing), never a 2xx, 403 or 5xx. Kafka is a recording stand-in, the key store a real
SQLite control database. The last test counts the requests sent: at least 1,000 with the key."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import allow_header_conformance, ignored_auth, positive_data_acceptance
from serving_events import click, memory_state
from test_serving_auth_matrix import RecordingProducer, connect

from core.settings import Settings
from funnel.pipeline import Pipeline
from services.api.app import create_app
from services.metadata.access_store import AccessStore

_DIR = Path(tempfile.mkdtemp(prefix="schemathesis-"))
_SETTINGS = Settings(data_dir=str(_DIR), auth={"enabled": True}, api={"queue_timeout_ms": 10_000.0})
_STORE = AccessStore(f"sqlite:///{_DIR / 'control.db'}")
ADMIN = _STORE.create_key("default", ["admin"], name="fuzz")[0]
_STATE = memory_state(_SETTINGS, {i: [f"c{j % 3}"] for j, i in enumerate("abcdef")},
                      [click("u1", "a"), click("u2", "b"), click("u2", "c")])
APP = create_app(_SETTINGS, Pipeline(_SETTINGS, _STATE), access=_STORE)
_KAFKA = RecordingProducer()  # stays connected through every lifespan schemathesis runs the app with
connect(APP.state.ctx.producer, _KAFKA)
APP.state.ctx.producer.close = lambda timeout_s=0.0: None
APP.state.ctx.feeds.close = lambda: None  # the feed threads stay up through every lifespan too (one per call)
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex="^/v1/")
# Not the must-show checks (server errors, schema conformance), and wrong here: ignored_auth takes the key
# given to the call for a generated (invalid) one (the auth matrix and the keyless test below check
# enforcement); positive_data_acceptance wants every schema-valid request accepted, but the API refuses
# schema-valid records on purpose, with a documented 422 naming the reason (a timestamp outside the
# worker's skew bounds, a body id that differs from the path's); allow_header_conformance wants a 405's Allow
# header to list every method of the path, but Starlette lists the first matching route's only
# (PUT /v1/items/{id} and DELETE /v1/items/{id} live in two routers): a known gap, not a schema break.
EXCLUDED = [ignored_auth, positive_data_acceptance, allow_header_conformance]
SENT = {"with_key": 0, "without_key": 0}
FUZZ = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@SCHEMA.parametrize()
@FUZZ
def test_with_an_admin_key_every_answer_is_documented(case: schemathesis.Case) -> None:
    SENT["with_key"] += 1
    response = case.call_and_validate(headers={"X-API-Key": ADMIN}, excluded_checks=EXCLUDED)
    assert response.status_code < 500 or response.status_code == 503, response.text


@SCHEMA.parametrize()
@settings(FUZZ, max_examples=20)
def test_without_a_key_every_answer_is_401(case: schemathesis.Case) -> None:
    SENT["without_key"] += 1
    response = case.call_and_validate(excluded_checks=[allow_header_conformance])
    # 401; or refused before authentication is even asked: routing (404, 405: schemathesis also probes
    # other methods) and FastAPI's body parsing (400, 413, 422), which run before any dependency
    assert response.status_code in (401, 400, 404, 405, 413, 422), response.text


def test_at_least_a_thousand_requests_were_sent() -> None:
    print(f"schemathesis requests: {SENT}")
    assert SENT["with_key"] >= 1000, SENT
    assert SENT["without_key"] >= 200, SENT
