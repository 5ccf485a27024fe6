"""``streamrec bench console``: a page that does not answer 200 is a failure, never a fast render; the
seeded world is what the options say (every user clicked, every click names a catalogue item)."""

from __future__ import annotations

import numpy as np

from services.cli.bench_console import _catalogue, _summary


def test_failures_are_counted_and_kept_out_of_the_render_times():
    samples = [(200, 120.0, 100.0, 2048), (200, 80.0, 60.0, 2048), (500, 2.0, -1.0, 10)]
    out = _summary(samples)
    assert out["n"] == 3 and out["failures"] == 1 and out["statuses"] == [200, 500]
    assert out["render_ms_max"] == 120.0 and out["render_ms_p50"] == 100.0
    assert out["server_ms_max"] == 100.0 and out["html_kb"] == 2.0


def test_a_page_that_never_answered_has_no_render_time():
    out = _summary([(503, 1.0, -1.0, 0)])
    assert out["failures"] == 1 and out["render_ms_max"] is None


def test_the_seeded_world():
    world = _catalogue(500, 40, 3, np.random.default_rng(0), now=1_700_000_000.0)
    ids = {it.item_id for it in world.items}
    assert len(ids) == 500 and len(world.users) == 40 and len(world.events) == 120
    assert {ev.user_id for ev in world.events} == set(world.users)
    assert {ev.item_id for ev in world.events} <= ids
    assert len({ev.event_id for ev in world.events}) == 120
