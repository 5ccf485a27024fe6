"""The operator console in a real browser (Playwright over Debian's Chromium) against the real stack:
broker, Redis, Feast, the stream worker, the publisher and the API. The catalogue and clicks go in
through the API's own write routes, a malformed record straight to the interactions topic, and two
ranker versions are published and promoted through the registry.

Every page opens with status 200 and no console error, failed request or uncaught exception, and is
saved as a screenshot under var/console/. The feed inspector looks a user up: the feed it explains is,
item by item, the one ``GET /v1/feed`` served (source, per-head scores, rules, explore flag,
propensity), and the item the user clicked is listed as filtered out for having been seen. As admin
the Models page rolls the ranker back: the registry's active version and, within the poll interval,
the API's feeds follow.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer

from core.settings import Settings
from core.topics import Topics
from services.stack import PROCESSES, Stack

sys.path.insert(0, str(Path(__file__).parent))
from browser import Page, browser, chromium_missing  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600),
              pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))]
REPO = Path(__file__).resolve().parents[3]
SHOTS = REPO / "var" / "console"
PAGES = ("overview?refresh=0", "models", "drift", "inspect", "experiments")
ITEMS = [f"song-{k:03d}" for k in range(60)]
USER = "ada"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, redis_url: str) -> Iterator[Stack]:
    from core.settings import load_settings

    prefix = "console-"
    s: Settings = load_settings(
        data_dir=str(tmp_path_factory.mktemp("console")),
        kafka={"bootstrap_servers": kafka_bootstrap, "topic_prefix": prefix},
        redis={"url": redis_url, "key_prefix": f"sr:{prefix}"}, feast={"project": "console"},
        worker={"content_model": False}, artifacts={"poll_interval_s": 1.0},
        console={"scrape_interval_s": 1.0})
    specs = [p for p in PROCESSES if p.name in ("worker", "publisher", "api")]
    with Stack(s, processes=specs, ready_timeout_s=240) as started:
        _seed(started)
        yield started


def _seed(stack: Stack) -> None:
    """Items and users over PUT, clicks over POST /v1/events (Zipf-like: song-000 the most popular),
    one malformed record on the topic; two rankers promoted; returns when the API serves the second."""
    api, now = stack.url("api"), time.time()
    items = [{"item_id": i, "title": f"song {k}", "categories": [f"genre{k % 5}"],
              "created_at": now - 3600 - k, "timestamp": now - 600} for k, i in enumerate(ITEMS)]
    clicks = [{"event_id": f"c-{u}-{k}", "user_id": f"fan{u}", "item_id": ITEMS[k], "type": "click",
               "timestamp": now - 300 + u, "context": {"device": "mobile"}}
              for u in range(40) for k in range(0, 60, 1 + u % 7) if k < 60 - u]
    clicks.append({"event_id": "ada-1", "user_id": USER, "item_id": ITEMS[0], "type": "click",
                   "timestamp": now - 30, "context": {"device": "mobile"}})
    with httpx.Client(base_url=api, timeout=10) as client:
        assert client.put("/v1/items", json=items).status_code == 202
        assert client.put("/v1/users", json=[{"user_id": USER, "attributes": {"plan": "pro"},
                                              "timestamp": now - 60}]).status_code == 202
        time.sleep(2)  # the worker applies items before clicks name them
        for start in range(0, len(clicks), 500):
            assert client.post("/v1/events", json=clicks[start:start + 500]).status_code == 202
    producer = KafkaProducer(bootstrap_servers=stack.settings.kafka.bootstrap_servers)
    producer.send(Topics(stack.settings.kafka.topic_prefix).interactions, b'{"event_id": "cut', key=b"bad")
    producer.flush(10)
    producer.close()
    _wait_applied(stack, len(clicks))
    _promote_rankers(stack)


def _wait_applied(stack: Stack, n: int, timeout_s: float = 120) -> None:
    import redis

    from feature_store.online.keys import Keys

    # a patient client: the serving one (redis_client) gives up after redis.read_timeout_s (100 ms)
    client = redis.Redis.from_url(stack.settings.redis.url or "", socket_timeout=30,
                                  socket_connect_timeout=30)
    key = Keys(stack.settings.redis.key_prefix).stats
    deadline = time.monotonic() + timeout_s
    while True:
        stats = {k.decode(): int(v) for k, v in client.hgetall(key).items()}
        if stats.get("interactions:processed", 0) >= n and stats.get("interactions:dead_lettered", 0) >= 1:
            break
        assert time.monotonic() < deadline, f"the worker did not apply the {n} seeded clicks: {stats}"
        time.sleep(0.5)
    client.close()


def _promote_rankers(stack: Stack) -> None:
    from services.cli.serve_models import Promoter, train_ranker

    promoter = Promoter(stack.settings)
    versions = [promoter.model("ranker", train_ranker(rows=1500, seed=k), {"auc": 0.6 + 0.05 * k})
                for k in range(2)]
    stack.versions = versions  # type: ignore[attr-defined]
    _wait_served(stack, versions[1])


def _wait_served(stack: Stack, version: str, timeout_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        feed = httpx.get(stack.url("api", f"/v1/feed/{USER}"), params={"device": "mobile"}, timeout=10).json()
        if feed["model_version"] == version:
            return dict(feed)
        assert time.monotonic() < deadline, f"the API still serves {feed['model_version']}, not {version}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def chrome() -> Iterator[Any]:
    with browser() as b:
        yield b


def test_every_page_opens_without_errors_and_is_saved(stack: Stack, chrome: Any):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = Page(chrome)
    page.open(stack.url("api", "/console/overview?refresh=0"))  # starts the scraper
    time.sleep(3.5)  # a few scrapes: rates need two
    timings = {}
    for path in PAGES:
        assert page.open(stack.url("api", f"/console/{path}")) == 200, path
        timings[path] = round(page.load_ms(), 1)
        name = path.split("?")[0]
        page.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    print("console page load (ms, browser navigation to load):", json.dumps(timings))
    assert not page.errors, page.errors
    page.open(stack.url("api", "/console/overview?refresh=0"))
    text = page.page.inner_text("main")
    assert "interactions.dlq" in text.replace(stack.settings.kafka.topic_prefix, "")
    letters = page.page.locator("[data-testid=dead-letters] tr").count() - 1
    assert letters >= 1, "the malformed record's dead letter is listed"
    assert page.page.locator("[data-testid=lag] td").count() >= 3, "lag per partition is listed"
    assert page.page.locator("svg.chart polyline").count() >= 3, "ingest, feeds and lag are plotted"


def _rows(page: Page, testid: str) -> list[dict[str, Any]]:
    return page.page.eval_on_selector_all(
        f"[data-testid={testid}] tr[data-item]",
        "rows => rows.map(r => ({item_id: r.dataset.item, rank: +r.dataset.rank, source: r.dataset.source,"
        " explore: r.dataset.explore === 'true', propensity: +r.dataset.propensity, score: +r.dataset.score,"
        " rules: r.dataset.rules ? r.dataset.rules.split(',') : [], heads: JSON.parse(r.dataset.heads)}))")


def test_the_inspector_explains_the_feed_the_api_served(stack: Stack, chrome: Any):
    served = httpx.get(stack.url("api", f"/v1/feed/{USER}"), params={"device": "mobile"}, timeout=10).json()
    page = Page(chrome)
    page.open(stack.url("api", "/console/inspect"))
    page.page.fill("input[name=user]", USER)
    page.page.fill("input[name=context]", "device=mobile")
    page.page.click("[data-testid=lookup] button")
    page.page.wait_for_selector("[data-testid=served]")
    page.page.screenshot(path=str(SHOTS / "inspect-user.png"), full_page=True)
    shown = _rows(page, "served")
    expected = [{"item_id": it["item_id"], "rank": it["rank"], "source": it["source"],
                 "explore": it["explore"], "propensity": it["propensity"], "score": it["score"],
                 "rules": it["rules"],
                 "heads": {k: v for k, v in it["scores"].items() if not k.startswith("retrieval_")}}
                for it in served["items"]]
    assert shown == expected and shown
    assert served["feed_id"] in page.page.inner_text("main")
    assert {r["source"] for r in shown} - {"explore"}, "items carry their retrieval source"
    assert any(r["heads"] for r in shown), "the ranker's per-head scores are shown"
    now = _rows(page, "feed-now")
    assert now and {r["item_id"] for r in now} <= set(ITEMS)
    filtered = dict(page.page.eval_on_selector_all(
        "[data-testid=filtered] tr[data-item]", "rows => rows.map(r => [r.dataset.item, r.dataset.reason])"))
    assert filtered.get(ITEMS[0]) == "seen", filtered
    assert ITEMS[0] not in {r["item_id"] for r in shown}
    assert "plan = pro" in page.page.inner_text("[data-testid=user]")
    assert ITEMS[0] in page.page.inner_text("[data-testid=history]")
    assert not page.errors, page.errors


def test_an_admin_rolls_the_ranker_back(stack: Stack, chrome: Any):
    from services.metadata import MetadataStore

    first, second = stack.versions  # type: ignore[attr-defined]
    page = Page(chrome)
    page.open(stack.url("api", "/console/models"))
    assert page.page.inner_text("[data-testid=role]").startswith("admin")
    assert page.page.inner_text("[data-testid=active-ranker]") == second
    page.page.click("[data-testid=rollback-ranker]")
    page.page.wait_for_selector("[data-testid=msg]")
    assert f"ranker {first} is active" in page.page.inner_text("[data-testid=msg]")
    assert page.page.inner_text("[data-testid=active-ranker]") == first
    page.page.screenshot(path=str(SHOTS / "models-after-rollback.png"), full_page=True)
    meta = MetadataStore(stack.settings.database_url)
    active = meta.active_model("ranker")
    assert active is not None and active.version == first and "rollback" in active.reason
    meta.close()
    assert _wait_served(stack, first)["model_version"] == first
    assert not page.errors, page.errors
