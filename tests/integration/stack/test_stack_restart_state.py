"""Issue 11, must show: local state lasts. Events in through the (stack's own) broker, stop the
stack, start it again on the same data_dir: the user's history, record and feed, and the catalogue,
are still there (the local Redis keeps an append-only file), and every component has the same port
(data_dir/ports.json). Then ``--fresh`` starts empty, on the same ports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from core.events import UserUpsert
from services.stack import Stack
from tests.integration.stack.stack_real import (
    Store,
    catalogue,
    clicks,
    feed_ids,
    make_stack,
    real_settings,
    send,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
SEEN = ["i1", "i2"]


def _ports(stack: Stack) -> dict[str, int]:
    return {name: comp.port for name, comp in stack.supervisor.components.items()}


def _first_run(stack: Stack) -> tuple[list[str], list[str]]:
    s, store, now = stack.settings, Store(stack.settings), time.time()
    crowd = [e for k in range(3) for e in clicks(f"fan{k}", ["i3", "i4", "i5"][: 3 - k], now, "crowd")]
    send(s, *catalogue(now), UserUpsert(user_id="alice", attributes={"plan": "gold"}, segment="web"),
         *crowd, *clicks("alice", SEEN, now + 1, "alice"))
    wait_for(lambda: store.history("alice") == SEEN[::-1], 90, "alice's clicks applied")
    history = store.history("alice")
    wait_for(lambda: store.has_user("alice") and all(store.has_item(f"i{k}") for k in range(1, 7)), 30,
             "the catalogue and alice's record")
    wait_for(lambda: store.history("fan0") == ["i5", "i4", "i3"], 30, "the crowd's clicks")
    feed = wait_for(lambda: feed_ids(stack, "alice"), 30, "a non-empty feed for alice")
    store.close()
    return history, feed


def test_state_and_ports_survive_a_restart_and_fresh_starts_empty(tmp_path: Path):
    settings = real_settings(tmp_path / "var", None, "")
    with make_stack(settings) as stack:
        ports, ops_port = _ports(stack), stack.probe_ports["api"]
        history, feed = _first_run(stack)
        assert not set(SEEN) & set(feed) and feed[0] == "i3"  # seen items excluded, most popular first
    saved = json.loads((tmp_path / "var" / "ports.json").read_text())
    assert saved == {**ports, "api.ops_port": ops_port}  # the components' ports and the API's ops port
    assert (tmp_path / "var" / "redis" / "appendonly.aof").stat().st_size > 0

    with make_stack(settings) as stack:  # the same data_dir, a new broker (memory-only), the same Redis file
        assert _ports(stack) == ports and stack.probe_ports["api"] == ops_port
        store = Store(stack.settings)
        assert store.history("alice") == history and store.has_user("alice") and store.has_item("i6")
        assert feed_ids(stack, "alice") == feed
        store.close()

    with make_stack(settings, fresh=True) as stack:
        assert _ports(stack) == ports
        store = Store(stack.settings)
        assert store.history("alice") == [] and not store.has_item("i6") and not store.has_user("alice")
        assert feed_ids(stack, "alice") == []
        store.close()
