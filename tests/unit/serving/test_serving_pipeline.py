"""Pipeline behaviour on an in-process state: cold start priors, smooth blending, determinism, rules."""

from __future__ import annotations

from core.settings import BusinessRule, Settings
from services.pipeline import InMemoryState, ItemInfo, Pipeline, UserState
from services.pipeline.retrieval import personal_weight


def _state() -> InMemoryState:
    items = [f"i{j:02d}" for j in range(40)]
    catalog = {i: ItemInfo(i, ["jazz" if j % 4 == 0 else f"c{j % 4}"], created_at=1.0 + j)
               for j, i in enumerate(items)}
    covis = {"i39": {i: 10.0 - j * 0.1 for j, i in enumerate(items[30:39])}}
    return InMemoryState(
        popularity={"all": {i: 100.0 - j for j, i in enumerate(items)},
                    "tablet": {i: float(j) for j, i in enumerate(items)}},
        covis=covis, catalog=catalog,
        users={"fan": UserState("fan", attributes={"interests": "jazz"})})


def _ids(p: Pipeline, user: str, **kw: object) -> list[str]:
    return [it.item_id for it in p.feed(user, n=10, **kw).feed.items if not it.explore]  # type: ignore[arg-type]


def test_cold_start_uses_segment_priors_and_declared_interests():
    p = Pipeline(Settings(rerank={"diversity": "none", "category_cap": 100}), _state())
    assert _ids(p, "new")[:3] == ["i00", "i01", "i02"]
    assert _ids(p, "new", context={"device": "tablet"})[:3] == ["i39", "i38", "i37"]
    fan = _ids(p, "fan")
    assert sum(i in {"i00", "i04", "i08", "i12"} for i in fan[:4]) >= 3  # jazz items lifted


def test_personalisation_blends_in_smoothly():
    weights = [personal_weight(UserState("u", n_interactions=n), 5.0) for n in range(0, 40, 4)]
    assert weights[0] == 0.0 and weights[-1] < 1
    assert all(b > a for a, b in zip(weights, weights[1:], strict=False))
    state = _state()
    p = Pipeline(Settings(rerank={"diversity": "none", "category_cap": 100}), state)
    shares = []
    for n in (1, 5, 50):
        state.users["u"] = UserState("u", recent=["i39"], seen={"i39"}, n_interactions=n)
        shares.append(sum(i in {f"i{j}" for j in range(30, 39)} for i in _ids(p, "u")))
    assert shares[0] < shares[1] <= shares[2]


def test_same_state_same_feed_and_rules_apply():
    rules = [BusinessRule(kind="block", name="no-i01", item_ids=["i01"]),
             BusinessRule(kind="pin", name="promo", item_ids=["i20"], position=0)]
    p = Pipeline(Settings(rerank={"rules": rules}), _state())
    a, b = p.feed("x", n=10).feed, p.feed("x", n=10).feed
    assert [it.item_id for it in a.items] == [it.item_id for it in b.items]
    assert [it.propensity for it in a.items] == [it.propensity for it in b.items]
    assert "i01" not in [it.item_id for it in a.items]
    assert a.items[0].item_id == "i20" and a.items[0].rules == ["promo"]


def test_user_tower_does_not_query_an_index_built_from_another_model():
    from services.pipeline.modelset import ModelSet
    from services.pipeline.retrieval import _tower_matches_index

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
