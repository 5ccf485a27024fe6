"""The opt-in record of the candidates retrieval drops (the console's feed inspector): off by default,
and inside ``why_filtered`` each dropped candidate with its reason and source, none of them in the feed."""

from __future__ import annotations

from funnel_events import NOW, catalog, click, crowd, memory_state

from core.events import ItemUpsert
from core.settings import BusinessRule, Settings
from funnel import retrieval
from funnel.pipeline import Pipeline
from funnel.retrieval import why_filtered

ITEMS = [f"i{j:02d}" for j in range(30)]


def _pipeline(candidates: int = 500) -> Pipeline:
    settings = Settings(retrieval={"candidates": candidates},
                        rerank={"rules": [BusinessRule(kind="block", name="no-i03", item_ids=["i03"])]})
    withdrawn = ItemUpsert(item_id="i05", categories=["c1"], created_at=NOW - 86400, active=False,
                           timestamp=NOW - 3600)
    events = crowd({i: 30 - j for j, i in enumerate(ITEMS)}) + [click("u", "i00"), click("u", "i01")]
    state = memory_state(settings, [*catalog({i: [f"c{j % 3}"] for j, i in enumerate(ITEMS)}), withdrawn],
                         events)
    return Pipeline(settings, state)


def test_nothing_is_recorded_unless_asked():
    assert retrieval._WHY.get() is None
    _pipeline().feed("u", n=10, now=NOW)
    assert retrieval._WHY.get() is None


def test_each_dropped_candidate_has_its_reason_and_source():
    p = _pipeline()
    with why_filtered() as why:
        feed = p.feed("u", n=10, now=NOW).feed
    assert retrieval._WHY.get() is None  # closed again
    assert why["i00"][0] == why["i01"][0] == "seen" and why["i00"][1] in retrieval.SOURCES
    assert why["i03"] == ("blocked", "popular")
    assert why["i05"][0] == "inactive"
    assert not {it.item_id for it in feed.items} & set(why)


def test_candidates_cut_by_the_budget_are_over_budget():
    with why_filtered() as why:
        feed = _pipeline(candidates=8).feed("u", n=5, now=NOW).feed
    over = {i for i, (reason, _) in why.items() if reason == "over budget"}
    assert len(over) >= 10 and not over & {it.item_id for it in feed.items}
