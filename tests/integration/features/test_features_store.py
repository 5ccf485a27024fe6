"""Feast on a real redis-server + SQLite registry: online/offline parity, point-in-time correctness,
and the fast reader's contract with get_online_features."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core import features as names
from core.events import Interaction
from core.settings import Settings, load_settings
from core.topics import INTERACTIONS
from feature_store import transforms as tf
from feature_store.archive import ParquetArchive
from feature_store.config import offline_dir
from feature_store.offline import build_offline, training_set
from feature_store.reader import FastFeatureReader
from feature_store.repository import apply, materialize, teardown
from feature_store.synthetic import StreamApplier, make_stream
from feature_store.writer import FeatureWriter

pytestmark = pytest.mark.integration

END = time.time() - 3600
T_LABEL = END - 1800
STREAM_FIELDS = {v.view: v.fields for v in names.STREAM_VIEWS}


@dataclass
class Served:
    ts: float
    user: dict[str, Any]
    items: list[dict[str, Any]]


@dataclass
class World:
    settings: Settings
    store: Any
    reader: FastFeatureReader
    served: list[Served] = field(default_factory=list)


def _settings(tmp: Path, redis_url: str) -> Settings:
    project = f"f{uuid.uuid4().hex[:10]}"
    return load_settings(data_dir=str(tmp), redis={"url": redis_url, "key_prefix": f"sr:{project}:"},
                         feast={"project": project, "push_batch_size": 10_000})


def _pit_events() -> list[dict[str, Any]]:
    """Only in the archive (offline): user 'pit' clicks pit_a before the label and pit_b after it."""
    evs = [("p1", "pit_a", "click", T_LABEL - 100), ("p2", "pit_b", "click", T_LABEL + 100),
           ("p3", "pit_a", "impression", T_LABEL - 50), ("p4", "pit_a", "impression", T_LABEL + 50)]
    return [dict(Interaction(event_id=e, user_id="pit", item_id=i, type=t, timestamp=ts).model_dump(),
                 categories=["pitcat"]) for e, i, t, ts in evs]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    settings = _settings(tmp_path_factory.mktemp("features"), redis_url)
    store = apply(settings)
    archive = ParquetArchive.from_settings(settings)
    applier = StreamApplier(FeatureWriter.from_settings(settings, store), archive,
                            tf.TransformParams.from_settings(settings))
    stream = make_stream(n_users=6, n_items=30, n_events=240, end_ts=END, seed=3)
    applier.upserts(stream.items, stream.users)
    w = World(settings, store, FastFeatureReader.from_settings(settings, store))
    rng = random.Random(5)
    evs = stream.interactions
    for k in range(0, len(evs), 40):
        batch, nxt = evs[k:k + 40], evs[k + 40:k + 41]
        applier.batch(batch)
        t = (batch[-1].timestamp + nxt[0].timestamp) / 2 if nxt else batch[-1].timestamp + 1
        user = rng.choice(sorted(applier.users))
        items = rng.sample(sorted(applier.items), 5)
        w.served.append(Served(t, w.reader.user_features(user), w.reader.item_features(items)))
    archive.append(INTERACTIONS, _pit_events())
    build_offline(archive, offline_dir(settings), tf.TransformParams.from_settings(settings))
    materialize(settings, store, rebuild=False)
    yield w
    teardown(store)


def _norm(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def _same(a: Any, b: Any) -> bool:
    a, b = _norm(a), _norm(b)
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _labels(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                         "event_timestamp": [r[2] for r in rows], "label": [1] * len(rows)})


def test_online_features_equal_offline_reconstruction_at_request_time(world: World):
    served = [(s.user, it, s.ts) for s in world.served for it in s.items]
    labels = _labels([(u["user_id"], it["item_id"], ts) for u, it, ts in served])
    labels["req"] = range(len(served))
    offline = training_set(world.store, labels).set_index("req")
    checked = 0
    for req, (user, item, _) in enumerate(served):
        online, off = {**user, **item}, offline.loc[req]
        for view, fields in STREAM_FIELDS.items():
            for f in fields:
                if online[f] is None and view != names.ITEM_REALTIME.view:
                    assert _norm(off[f]) is None, (view, f, off[f])
                    continue
                assert _same(online[f], off[f]), (req, view, f, online[f], off[f])
                checked += 1
    assert checked > 100


def test_point_in_time_no_value_from_after_the_label(world: World):
    labels = _labels([("pit", "pit_a", T_LABEL), ("pit", "pit_a", T_LABEL + 200)])
    df = training_set(world.store, labels).sort_values("event_timestamp").reset_index(drop=True)
    before, after = df.iloc[0], df.iloc[1]
    assert _norm(before["recent_items"]) == ["pit_a"]          # written before: present
    assert before["history_len"] == 1 and before["impressions_24h"] == 1
    assert before["last_event_ts"] == pytest.approx(T_LABEL - 50)
    assert _norm(after["recent_items"]) == ["pit_b", "pit_a"]  # written after: only in the later row
    assert after["impressions_24h"] == 2


def test_fast_reader_matches_get_online_features(world: World):
    rng = random.Random(11)
    users = [f"u{k}" for k in rng.sample(range(6), 4)] + ["nobody"]
    items = [f"i{k}" for k in rng.sample(range(30), 12)] + ["no-such-item"]
    fs = world.store.get_feature_service(names.RANKING_SERVICE)
    for join_key, ids, got in ((names.USER_KEY, users, [world.reader.user_features(u) for u in users]),
                               (names.ITEM_KEY, items, world.reader.item_features(items))):
        views = {v.view for v in names.ALL_VIEWS if v.join_key == join_key}
        refs = [f"{p.name}:{f.name}" for p in fs.feature_view_projections if p.name in views
                for f in p.features]
        entity_rows = [{join_key: i} for i in ids]
        sdk = world.store.get_online_features(features=refs, entity_rows=entity_rows).to_dict()
        fields = [r.split(":")[1] for r in refs]
        assert set(got[0]) == {join_key, *fields}
        for n, row in enumerate(got):
            for f in fields:
                assert _same(row[f], sdk[f][n]), (ids[n], f, row[f], sdk[f][n])
    everything = FastFeatureReader.from_settings(world.settings, world.store, service=names.ALL_SERVICE)
    assert everything.item_features(items[:1])[0]["categories"]  # materialized batch view is there
    assert "categories" not in world.reader.item_features(items[:1])[0]  # ranking: the stream views
