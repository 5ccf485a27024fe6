"""The funnel's heuristic path over an in-process state built from events: cold-start priors by segment,
smooth personalisation blending, the category source, determinism, business rules, slot positions."""

from __future__ import annotations

from typing import Any

from funnel_events import NOW, catalog, click, crowd, memory_state

from core.events import UserUpsert
from core.online import UserState
from core.settings import BusinessRule, Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.pipeline import Pipeline
from funnel.retrieval import personal_weight

ITEMS = [f"i{j:02d}" for j in range(40)]
JAZZ = {i for j, i in enumerate(ITEMS) if j % 4 == 0}
RELEVANCE_ONLY: dict[str, Any] = {"diversity": "none", "category_cap": 100}


def _state(settings: Settings, *extra: Any) -> MemoryOnline:
    """Phone users click item j 3 (40 - j) times, tablet users j times: overall popularity falls with j
    (120 - 2j), tablet popularity rises with it. Each click is a user of its own (no co-visitation)."""
    cats = {i: ["jazz" if i in JAZZ else f"c{j % 4}"] for j, i in enumerate(ITEMS)}
    events = crowd({i: 3 * (40 - j) for j, i in enumerate(ITEMS)}, "phone", device="phone")
    events += crowd({i: j for j, i in enumerate(ITEMS)}, "tablet", device="tablet")
    users = [UserUpsert(user_id="fan", attributes={"interests": "jazz"}, timestamp=NOW - 3600)]
    return memory_state(settings, catalog(cats), [*events, *(e for batch in extra for e in batch)], users)


def _ids(p: Pipeline, user: str, n: int = 10, **kw: Any) -> list[str]:
    return [it.item_id for it in p.feed(user, n=n, now=NOW, **kw).feed.items if not it.explore]


def test_cold_start_uses_segment_priors_and_declared_interests():
    settings = Settings(rerank=RELEVANCE_ONLY)
    p = Pipeline(settings, _state(settings))
    assert _ids(p, "new")[:3] == ["i00", "i01", "i02"]
    assert _ids(p, "new", context={"device": "tablet"})[:3] == ["i39", "i38", "i37"]
    fan = _ids(p, "fan")
    assert sum(i in JAZZ for i in fan[:4]) >= 3  # jazz items lifted by the declared interest
    assert sum(i in JAZZ for i in _ids(p, "new")[:4]) == 1


def _covisiting(n_users: dict[str, int]) -> list[Any]:
    """``n_users[item]`` users click i39 and then ``item`` a minute later (co-visitation of i39)."""
    return [e for item, n in n_users.items() for k in range(n)
            for e in (click(f"co-{item}-{k}", "i39", NOW - 120), click(f"co-{item}-{k}", item, NOW - 60))]


def test_personalisation_blends_in_smoothly():
    weights = [personal_weight(UserState("u", n_interactions=n), 5.0) for n in range(0, 40, 4)]
    assert weights[0] == 0.0 and weights[-1] < 1
    assert all(b > a for a, b in zip(weights, weights[1:], strict=False))
    settings = Settings(rerank=RELEVANCE_ONLY)
    neighbours = {f"i{30 + j}": 10 - j for j in range(9)}  # i30 the strongest neighbour of i39
    returning = [click(f"u{n}", "i39", NOW - 30) for n in (1, 5, 50) for _ in range(n)]
    state = _state(settings, _covisiting(neighbours), returning)
    p = Pipeline(settings, state)
    assert [state.user(f"u{n}").n_interactions for n in (1, 5, 50)] == [1, 5, 50]
    shares = [sum(i in neighbours for i in _ids(p, f"u{n}")) for n in (1, 5, 50)]
    assert shares[0] < shares[1] < shares[2] == len(neighbours), shares


def test_a_users_categories_personalise_from_the_first_clicks():
    """Two jazz clicks: the user's category affinity (the Feast row the worker pushes) brings the
    category source in, and jazz fills the feed; without the feature row, nothing personal is known."""
    settings = Settings(rerank=RELEVANCE_ONLY)
    state = _state(settings, [click("jf", "i04", NOW - 600), click("jf", "i08", NOW - 60)])
    with_row = Pipeline(settings, state, reader=state).feed("jf", n=10, now=NOW).feed
    exploit = [it for it in with_row.items if not it.explore]
    assert sum(it.item_id in JAZZ for it in exploit) >= 7, [it.item_id for it in exploit]
    assert any(it.source == "category" for it in exploit)
    without = _ids(Pipeline(settings, state), "jf")
    assert sum(i in JAZZ for i in without) < sum(it.item_id in JAZZ for it in exploit)


def test_same_state_same_feed_and_rules_apply():
    rules = [BusinessRule(kind="block", name="no-i01", item_ids=["i01"]),
             BusinessRule(kind="pin", name="promo", item_ids=["i20"], position=0)]
    settings = Settings(rerank={"rules": rules})
    p = Pipeline(settings, _state(settings))
    a, b = p.feed("x", n=10, now=NOW).feed, p.feed("x", n=10, now=NOW).feed
    assert [it.item_id for it in a.items] == [it.item_id for it in b.items]
    assert [it.propensity for it in a.items] == [it.propensity for it in b.items]
    assert "i01" not in [it.item_id for it in a.items]
    assert a.items[0].item_id == "i20" and a.items[0].rules == ["promo"]
    assert a.model_version == "none" and a.generated_at == NOW


def test_exploration_slots_sit_where_the_feed_size_puts_them():
    """Slots are spread over ``publisher.feed_size`` whatever ``n`` a request asks for, so the items
    before the first slot are the same in a short feed and in a long one."""
    settings = Settings(publisher={"feed_size": 20}, rerank={"explore_slots": 2})
    p = Pipeline(settings, _state(settings), clock=lambda: NOW)
    full = p.feed("x").feed.items
    assert [k for k, it in enumerate(full) if it.explore] == [6, 13]
    for n in (3, 6, 7, 10, 14):
        items = p.feed("x", n=n).feed.items
        assert [k for k, it in enumerate(items) if it.explore] == [k for k in (6, 13) if k < n]
        assert [it.item_id for it in items[:6]] == [it.item_id for it in full[:min(n, 6)]]


def test_a_longer_feed_starts_with_the_feed_the_api_serves():
    """n > feed_size (``streamrec eval`` asks for 50) re-ranks a longer list, but its first feed_size
    items, the exploration picks and their propensities included, are the feed_size feed's."""
    settings = Settings(publisher={"feed_size": 20}, rerank={"explore_slots": 2})
    p = Pipeline(settings, _state(settings), clock=lambda: NOW)
    for user in ("x", "fan"):
        short, long = p.feed(user, n=20).feed.items, p.feed(user, n=36).feed.items
        assert [(it.item_id, it.explore, it.propensity) for it in long[:20]] == \
            [(it.item_id, it.explore, it.propensity) for it in short]
        assert sum(it.explore for it in long) == 2


def test_user_tower_does_not_query_an_index_built_from_another_model():
    from funnel.modelset import ModelSet
    from funnel.retrieval import _tower_matches_index

    class Tower:
        version = "m2"

        def user_vector(self, user):
            return None

    class Index:
        def __init__(self, built_from: str) -> None:
            self.model_version = built_from

    assert _tower_matches_index(Tower(), Index("m2"))
    assert not _tower_matches_index(Tower(), Index("m1"))
    assert ModelSet().user_tower is None


def test_explore_picks_outside_the_truncated_candidates_still_serve():
    """The candidate budget cuts the merged sources; an exploration pick from the fresh or popular
    pools may fall outside the ranked candidates and must still be served (it used to raise inside the
    pipeline, which turned the whole feed into a degraded fallback)."""
    settings = Settings(rerank={**RELEVANCE_ONLY, "explore_slots": 2}, publisher={"feed_size": 10},
                        retrieval={"candidates": 6, "fresh": 20, "popular": 20})
    p = Pipeline(settings, _state(settings))
    feed = p.feed("new", n=10, now=NOW).feed
    ranked = set(p.rank_inputs("new", NOW).item_ids)
    explored = [it for it in feed.items if it.explore]
    assert not feed.degraded and explored
    assert any(it.item_id not in ranked for it in explored)
