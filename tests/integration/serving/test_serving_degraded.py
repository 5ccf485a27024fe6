"""Degraded mode: the real redis-server is stopped mid-run; valid feed requests still get 200."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from serving_helpers import seed_state, small_world

from core.settings import load_settings
from services.api.app import create_app
from services.localstack import start_redis
from services.pipeline.build import build_pipeline


def test_feed_survives_redis_stop(tmp_path: Path):
    url, child = start_redis(tmp_path / "redis", tmp_path / "logs")
    try:
        # what is tested is the fallback when Redis is gone, not deadlines: a cold first request on a
        # loaded machine must neither be shed (queue_timeout_ms) nor miss the serving read deadline
        settings = load_settings(data_dir=str(tmp_path), api={"queue_timeout_ms": 10_000},
                                 redis={"url": url, "key_prefix": "sr:deg:", "read_timeout_s": 2.0})
        items, events = small_world()
        seed_state(settings, items, events)
        pipeline, close = build_pipeline(settings, hot_swap=False)
        with TestClient(create_app(settings, pipeline, on_close=close)) as client:
            before = client.get("/v1/feed/u1", params={"n": 10})
            assert before.status_code == 200 and before.json()["degraded"] is False
            good = [it["item_id"] for it in before.json()["items"]]
            assert "i000" not in good and len(good) == 10
            child.stop()
            for user in ("u1", "someone-new"):
                resp = client.get(f"/v1/feed/{user}", params={"n": 10})
                assert resp.status_code == 200, resp.text
                body = resp.json()
                assert body["degraded"] is True and len(body["items"]) == 10
            cached = client.get("/v1/feed/u1", params={"n": 10}).json()
            assert [it["item_id"] for it in cached["items"]] == good  # the user's last feed
            assert client.get("http://testserver:8081/readyz").status_code == 503
            assert client.get("http://testserver:8081/healthz").status_code == 200
    finally:
        child.stop()
