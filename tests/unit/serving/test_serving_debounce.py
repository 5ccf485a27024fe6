"""Publisher debouncing: one feed per user per window, safe commit offsets, refresh reasons."""

from __future__ import annotations

from services.publisher.debounce import Debouncer


def test_debounce_merges_and_tracks_offsets():
    d = Debouncer(0.1)
    d.add("u1", 5.0, now=0.0, tp=("t", 0), offset=7)
    d.add("u1", 3.0, now=0.05, tp=("t", 0), offset=9)
    d.add("u2", 4.0, now=0.05, tp=("t", 1), offset=2)
    assert d.min_offsets() == {("t", 0): 7, ("t", 1): 2}
    assert d.due(0.09) == [] and d.next_due_in(0.09) is not None
    (p,) = d.due(0.11)
    assert p.user_id == "u1" and p.first_event_ts == 3.0 and d.min_offsets() == {("t", 1): 2}
    d.retry(p, now=0.2, delay_s=1.0)
    assert [q.user_id for q in d.due(0.5)] == ["u2"] and len(d) == 1
    assert [q.user_id for q in d.due(1.3)] == ["u1"] and p.attempts == 1


def test_schedule_refresh_carries_no_event_time_until_an_event_joins():
    d = Debouncer(0.0)
    d.add("u", None, now=0.0, reason="schedule")
    (p,) = d.due(0.0)
    assert p.first_event_ts is None and p.reason == "schedule"
    d.add("u", None, now=1.0, reason="model")
    d.add("u", 0.5, now=1.0)
    (p,) = d.due(1.0)
    assert p.first_event_ts == 0.5 and p.reason == "interaction"
