"""Every ``streamrec_*`` metric that deploy/ references (dashboard, alerts, README) is exported."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from deploy_helpers import DEPLOY
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, CollectorRegistry

from core.errors import StoreUnavailable
from core.online import ItemInfo, UserState
from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.pipeline import Pipeline
from services.api.app import create_app

METRIC = re.compile(r"\bstreamrec_[a-z0-9_]*[a-z0-9]")
SCANNED = ("*.json", "*.yaml", "*.yml", "*.md")
SUFFIXES = {"counter": ("_total", "_created"),
            "histogram": ("", "_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created")}


def referenced() -> dict[str, set[str]]:
    """metric name -> files under deploy/ that mention it."""
    found: dict[str, set[str]] = {}
    for pattern in SCANNED:
        for path in DEPLOY.rglob(pattern):
            for name in METRIC.findall(path.read_text()):
                found.setdefault(name, set()).add(str(path.relative_to(DEPLOY)))
    return found


def sample_names(registries: Iterable[CollectorRegistry]) -> set[str]:
    """Sample names a scrape shows (a labelled collector with no child yet shows none, so derive them):
    counter ``x`` -> ``x_total``/``x_created``; histogram ``x`` -> ``x_bucket``/``_sum``/``_count``/
    ``_created``, and ``x`` itself (the README names a histogram by its family); gauge ``x`` -> ``x``."""
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            names.update(f"{family.name}{suffix}" for suffix in SUFFIXES.get(family.type, ("",)))
            names.update(s.name for s in family.samples)
    return names


def exported() -> set[str]:
    """Import every metric-defining module: module-level collectors land in the global REGISTRY; the
    worker, API and publisher keep their own registry per instance, so build one of each."""
    import services.artifacts.loader  # noqa: F401
    import services.drift.job  # noqa: F401
    import services.scheduler.service  # noqa: F401
    from services.api.metrics import ApiMetrics
    from services.publisher.service import PublisherMetrics
    from streams.metrics import WorkerMetrics

    own = [ApiMetrics().registry, PublisherMetrics().registry, WorkerMetrics().registry]
    return sample_names([REGISTRY, *own])


def missing(found: dict[str, set[str]], names: set[str]) -> dict[str, set[str]]:
    return {name: files for name, files in found.items() if name not in names}


def test_deploy_references_metrics() -> None:
    found = referenced()
    assert {"streamrec_api_feed_seconds_bucket", "streamrec_worker_dead_lettered_total"} <= set(found)


def test_every_referenced_metric_is_exported() -> None:
    assert missing(referenced(), exported()) == {}


def test_an_unknown_or_unsuffixed_metric_is_caught() -> None:
    names = exported()
    refs = {"streamrec_dead_letters_total": {"a"}, "streamrec_worker_events": {"b"},
            "streamrec_api_feed_seconds_total": {"c"}, "streamrec_worker_events_total": {"d"},
            "streamrec_api_feed_seconds_bucket": {"e"}, "streamrec_worker_consumer_lag": {"f"}}
    assert set(missing(refs, names)) == {"streamrec_dead_letters_total", "streamrec_worker_events",
                                         "streamrec_api_feed_seconds_total"}


class _StoreDown(MemoryOnline):
    """The in-process store with its reads failing like a dead Redis."""

    def user(self, user_id: str) -> UserState:
        raise StoreUnavailable("redis down (test)")

    def items(self, item_ids: Sequence[str]) -> list[ItemInfo | None]:
        raise StoreUnavailable("redis down (test)")


def _sample(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name))
    return float(line.rsplit(" ", 1)[1])


def test_api_exposes_the_alerted_store_and_artifact_metrics() -> None:
    settings = Settings()
    client = TestClient(create_app(settings, Pipeline(settings, _StoreDown(settings))))
    assert client.get("/v1/feed/u1").json()["degraded"] is True
    assert client.get("/v1/items/a/similar").json()["degraded"] is True
    text = client.get("http://testserver:8081/metrics").text
    assert _sample(text, 'streamrec_api_store_unavailable_total{endpoint="feed"}') == 1.0
    assert _sample(text, 'streamrec_api_store_unavailable_total{endpoint="similar"}') == 1.0
    assert _sample(text, 'streamrec_api_feeds_total{degraded="true"}') == 1.0
    assert "# TYPE streamrec_artifact_load_failures_total counter" in text
    assert "# TYPE streamrec_artifact_loaded_version gauge" in text
