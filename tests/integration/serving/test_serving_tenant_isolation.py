"""Tenant isolation on one real Redis and one API app: tenants ``default`` and ``acme`` with the same user
and item ids but opposite histories. Each tenant's state is written by the worker's own writer under
its namespace (core.tenancy.scoped); the API resolves each key's tenant and serves each feed from that
tenant's state only; the keys, topics, Feast project, files and models of the two never overlap; and
the ops port's metrics count each tenant's feeds apart."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from serving_helpers import seed_state

from core.events import Interaction, ItemUpsert
from core.settings import Settings
from core.tenancy import control_url, scoped
from core.topics import Topics
from funnel.pipeline import Pipeline
from services.api.app import create_app
from services.metadata.access_store import AccessStore
from services.pipeline.build import build_pipeline

pytestmark = pytest.mark.integration
N = 12


def world(reverse: bool, seen: str) -> tuple[list[ItemUpsert], list[Interaction]]:
    """Items i000..i011, item j clicked by N - j crowd users (``reverse``: by j + 1); u1 clicked ``seen``."""
    now = time.time()
    items = [ItemUpsert(item_id=f"i{j:03d}", categories=["c"], created_at=now - 86400 * (1 + j))
             for j in range(N)]
    events = [Interaction(event_id=f"e{j}-{k}", user_id=f"crowd{k}", item_id=f"i{j:03d}", type="click",
                          timestamp=now - 60) for j in range(N) for k in range(j + 1 if reverse else N - j)]
    events.append(Interaction(event_id="seen", user_id="u1", item_id=seen, type="click", timestamp=now - 30))
    return items, events


def _no_models(s: Settings) -> tuple[Pipeline, Callable[[], None]]:
    return build_pipeline(s, hot_swap=False)  # the real Redis-backed pipeline; no trained models here


def test_two_tenants_with_the_same_ids_never_mix(settings: Settings, tmp_path: Path):
    base = settings.model_copy(update={  # no shedding on a busy test machine: this test is about tenants
        "auth": settings.auth.model_copy(update={"enabled": True}),
        "api": settings.api.model_copy(update={"queue_timeout_ms": 30_000.0, "request_timeout_s": 30.0})})
    mine, acme = scoped(base, "default"), scoped(base, "acme")
    seed_state(mine, *world(reverse=False, seen="i000"))
    seed_state(acme, *world(reverse=True, seen=f"i{N - 1:03d}"))

    store = AccessStore(control_url(base))
    store.create_tenant("acme")
    key_mine = store.create_key("default", ["feed:read"])[0]
    key_acme = store.create_key("acme", ["feed:read"])[0]
    pipeline, close = _no_models(base)  # the API process runs on the deployment's settings
    app = create_app(base, pipeline, close, tenant_pipelines=_no_models, access=store)
    with TestClient(app) as client:
        def feed(key: str) -> list[str]:
            resp = client.get("/v1/feed/u1", params={"n": 5}, headers={"X-API-Key": key})
            assert resp.status_code == 200, resp.text
            return [it["item_id"] for it in resp.json()["items"]]

        ours, theirs = feed(key_mine), feed(key_acme)
        # same user id, same item ids, each tenant's popularity and each tenant's seen item
        assert ours[0] == "i001" and "i000" not in ours, ours
        assert theirs[0] == f"i{N - 2:03d}" and f"i{N - 1:03d}" not in theirs, theirs
        metrics = client.get("http://testserver:8081/metrics").text
    assert 'streamrec_api_feeds_total{degraded="false",tenant="acme"} 1.0' in metrics
    assert 'streamrec_api_feeds_total{degraded="false"} 1.0' in metrics  # the default tenant's own

    # namespaces: every key acme's writer made carries acme's prefix; no default key does
    r = redis.Redis.from_url(settings.redis.url or "")
    keys = [k.decode() for k in r.scan_iter(match=f"{base.redis.key_prefix}*", count=1000)]
    acme_keys = [k for k in keys if k.startswith(acme.redis.key_prefix)]
    assert acme_keys and len(acme_keys) < len(keys)
    assert all(not k.startswith(acme.redis.key_prefix) for k in set(keys) - set(acme_keys))
    assert set(Topics(mine.kafka.topic_prefix).all()).isdisjoint(Topics(acme.kafka.topic_prefix).all())
    assert mine.feast.project != acme.feast.project
    assert mine.worker.group_id != acme.worker.group_id
    assert acme.data_dir.resolve().is_relative_to(mine.data_dir.resolve() / "tenants")
    for attr in ("archive_dir", "database_url"):
        assert getattr(mine, attr) != getattr(acme, attr), attr
