"""Parity of the one path: what the evaluation scores is what the API serves.

The same events go (1) through Kafka to the real stream worker into Redis and Feast, and (2) through the
replay into the in-process store that ``streamrec eval`` uses. The models the training job fits on those
events (two-tower, index, item-to-item relations, ranker) are published and promoted; the real API
process hot-swaps them in. For a sample of users, the API's feed equals the feed the evaluation's
pipeline computes over the replayed store at the same clock: every item in order, exploration slots
included (both sides draw them from the same seed over the same posteriors).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from kafka import KafkaProducer

from core.events import Interaction, encode
from core.settings import Settings
from core.topics import Topics
from feature_store.online.memory_state import MemoryOnline
from feature_store.repository import apply as feast_apply
from funnel.features import FEATURES
from funnel.log import Catalog, EventLog
from funnel.modelset import ModelSet, ModelSlot
from funnel.pipeline import Pipeline
from funnel.replay import Replay
from funnel.train_two_tower import TwoTowerOptions
from funnel.training import TrainConfig, train
from iokit import ChildProcess, free_port, spawn
from models.content import ContentConfig, ContentEncoder, item_text
from models.simulator import World, WorldConfig
from services.cli.serve_models import Promoter
from services.pipeline.build import build_pipeline
from services.stack_setup import ensure_topics, settings_env

pytestmark = pytest.mark.e2e
CFG = TrainConfig(two_tower=TwoTowerOptions(dim=16, max_len=20, epochs=4, batch_size=64), min_groups=10)
N_EVENTS = 2500


def _settings(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "worker": settings.worker.model_copy(update={"content_model": False, "batch_size": 400}),
        "publisher": settings.publisher.model_copy(update={"feed_size": 20})})


def _world_events() -> tuple[World, Catalog, EventLog, list[Interaction]]:
    world = World(WorldConfig(n_users=30, n_items=120, seed=7))
    start = time.time() - 2 * N_EVENTS  # recent: inside the worker's skew bounds
    items = world.item_upserts(now=start - 10)
    vectors = ContentEncoder(ContentConfig(use_model=False)).encode(
        [item_text(it.title, it.text) for it in items], [list(it.categories) for it in items])
    events = list(world.traffic(N_EVENTS, start_ts=start, rate_per_s=1.0))
    log = EventLog.build({"event_id": [e.event_id for e in events], "user": [e.user_id for e in events],
                          "item": [e.item_id for e in events], "type": [str(e.type) for e in events],
                          "value": [e.value for e in events], "ts": [e.timestamp for e in events],
                          "device": [e.context.get("device", "") for e in events]})
    return world, Catalog(items, vectors), log, events


def _produce(s: Settings, catalog: Catalog, events: list[Interaction]) -> None:
    """The catalogue, applied, before the interactions: items and interactions are separate topics with
    no order between them, and the worker reads an item's categories when it applies a click on it
    (the replay applies upserts first by their timestamps)."""
    topics = Topics(s.kafka.topic_prefix)
    producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, acks="all", linger_ms=5)
    for it in catalog.items:
        producer.send(topics.items, key=it.item_id.encode(), value=encode(it))
    producer.flush()
    _wait(lambda: _applied(s, "items") >= len(catalog.items), 60, "the worker to apply the catalogue")
    for ev in events:
        producer.send(topics.interactions, key=ev.user_id.encode(), value=encode(ev))
    producer.flush()
    producer.close()


def _start(s: Settings, module: str, name: str) -> ChildProcess:
    env = {**settings_env(s), "STREAMREC_LOG_LEVEL": "WARNING"}
    return spawn(name, [sys.executable, "-m", module], s.data_dir / "logs", env)


def _wait(pred, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _applied(s: Settings, base: str = "interactions") -> int:
    import redis

    from feature_store.online.keys import Keys

    client = redis.Redis.from_url(s.redis.url or "")
    raw = client.hget(Keys(s.redis.key_prefix).stats, f"{base}:processed")
    return int(raw or 0)


def _same_features(s: Settings, models: ModelSet, evaluated: Pipeline, users: list[str]) -> None:
    """The features a request computes over Redis and Feast (what the worker built) equal the ones the
    training job and the evaluation compute over the replay, column by column, at the same clock."""
    live, close = build_pipeline(s, hot_swap=False)
    try:
        live.models.swap(**{f: getattr(models, f) for f in ("ranker", "index", "user_tower", "neighbours")})
        assert live.reader is not None and live.reader.wait(60), "the Feast reader never came up"  # type: ignore[attr-defined]
        for user in users:
            now = time.time()
            rows = live.reader.user_features(user), evaluated.reader.user_features(user)  # type: ignore[union-attr]
            assert rows[0] == rows[1], rows
            a, b = live.rank_inputs(user, now), evaluated.rank_inputs(user, now)
            assert a.features_ok and a.item_ids == b.item_ids, user
            for j, name in enumerate(FEATURES):
                np.testing.assert_allclose(a.matrix[:, j], b.matrix[:, j], rtol=1e-5, atol=1e-6,
                                           err_msg=f"{user}: feature {name}")
    finally:
        close()


def test_api_serves_the_feed_the_evaluation_scores(settings: Settings, tmp_path: Path) -> None:
    s = _settings(settings)
    world, catalog, log, events = _world_events()
    ensure_topics(s)
    feast_apply(s)
    worker_settings = s.worker.model_copy(update={"metrics_port": free_port()})
    worker = _start(s.model_copy(update={"worker": worker_settings}), "streams.worker", "worker")
    api_port = free_port()
    # parity, not load: a cold first request (models loading) must not be shed by admission control
    api_settings = s.model_copy(update={"api": s.api.model_copy(update={"port": api_port,
                                                                       "queue_timeout_ms": 10_000})})
    api = None
    try:
        _produce(s, catalog, events)
        trained = train(log, catalog, s, CFG, lambda: MemoryOnline(s))
        assert trained.ranker is not None and trained.neighbours is not None, trained.skipped
        promoter = Promoter(s)
        for kind, obj in (("two_tower", trained.two_tower), ("i2i", trained.neighbours),
                          ("ranker", trained.ranker)):
            promoter.model(kind, obj, {"source": "parity test"})
        assert trained.index is not None
        trained.index.model_version = trained.two_tower.version  # type: ignore[union-attr]
        promoter.index(trained.index, 1.0)
        _wait(lambda: _applied(s) >= len(events), 120, "the worker to apply every event")
        api = _start(api_settings, "services.api", "api")
        url = f"http://127.0.0.1:{api_port}"
        probe = world.user_ids[0]
        _wait(lambda: httpx.get(f"{url}/v1/feed/{probe}", timeout=5).json().get("model_version")
              == trained.ranker.version, 120, "the API to load the promoted models")

        replay = Replay(log, catalog, MemoryOnline(s))
        replay.advance(len(log))
        evaluated = Pipeline(s, replay.store, ModelSlot(trained.models()), reader=replay.store)  # type: ignore[arg-type]
        _same_features(s, trained.models(), evaluated, world.user_ids[:15])
        compared = 0
        for user in world.user_ids[:15]:
            now = time.time()
            response = httpx.get(f"{url}/v1/feed/{user}", params={"n": 20}, timeout=5)
            assert response.status_code == 200, response.text
            served = response.json()
            ours = evaluated.feed(user, n=20, now=now).feed
            assert not served["degraded"] and served["model_version"] == ours.model_version
            detail = [(a["item_id"], a["source"], a["score"], b.item_id, b.source, b.score)
                      for a, b in zip(served["items"], ours.items, strict=False)]
            assert [it["item_id"] for it in served["items"]] == [it.item_id for it in ours.items], detail
            assert [it["explore"] for it in served["items"]] == [it.explore for it in ours.items]
            compared += 1
        assert compared == 15
    finally:
        if api is not None:
            api.stop()
        worker.stop()
