import json
import time

import pytest

from core.events import (
    MAX_EVENT_BYTES,
    EventError,
    Feed,
    FeedItem,
    Interaction,
    ItemUpsert,
    check_skew,
    decode_feed,
    decode_interaction,
    decode_item,
    encode,
)


def _click(**over) -> dict:
    base = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "timestamp": 1.7e9}
    return {**base, **over}


def test_interaction_round_trip_keeps_every_field():
    ev = Interaction(**_click(context={"device": "ios"}, feed_id="f1", position=3, propensity=0.25))
    assert decode_interaction(encode(ev)) == ev


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "unparseable"),
        (b"[1, 2]", "unparseable"),
        (json.dumps({k: v for k, v in _click().items() if k != "user_id"}).encode(), "missing_field"),
        (json.dumps(_click(type="teleport")).encode(), "unknown_type"),
        (json.dumps(_click(timestamp="yesterday")).encode(), "invalid_field"),
        (json.dumps(_click(colour="red")).encode(), "unknown_field"),
        (json.dumps(_click(schema_version=2)).encode(), "unknown_version"),
        (json.dumps(_click(propensity=0)).encode(), "invalid_field"),
    ],
)
def test_bad_interactions_name_their_reason(raw: bytes, reason: str):
    with pytest.raises(EventError) as err:
        decode_interaction(raw)
    assert err.value.reason == reason
    assert err.value.detail


def test_oversized_payload_is_refused_before_parsing():
    raw = json.dumps(_click(context={"pad": "x" * MAX_EVENT_BYTES})).encode()
    with pytest.raises(EventError) as err:
        decode_interaction(raw)
    assert err.value.reason == "oversized"


def test_skew_checks_future_and_past():
    now = time.time()
    check_skew(now + 10, now, max_future_s=60, max_past_s=60)
    with pytest.raises(EventError, match="future"):
        check_skew(now + 3600, now, max_future_s=60, max_past_s=60)
    with pytest.raises(EventError, match="past"):
        check_skew(now - 3600, now, max_future_s=60, max_past_s=60)


def test_deep_engagement_includes_long_dwell_only():
    assert Interaction(**_click(type="like")).is_deep
    assert Interaction(**_click(type="dwell", value=45)).is_deep
    assert not Interaction(**_click(type="dwell", value=3)).is_deep
    assert not Interaction(**_click()).is_deep
    assert Interaction(**_click()).is_positive


def test_feed_ranks_must_be_positions():
    items = [FeedItem(item_id="a", rank=0, score=1, source="pop"), FeedItem(item_id="b", rank=2, score=1,
                                                                            source="pop")]
    with pytest.raises(ValueError, match="ranks"):
        Feed(feed_id="f", user_id="u", version=1, generated_at=1.0, items=items)
    ok = Feed(feed_id="f", user_id="u", version=1, generated_at=1.0, items=items[:1])
    assert decode_feed(encode(ok)) == ok


def test_item_upsert_round_trip():
    item = ItemUpsert(item_id="i9", title="t", categories=["a"], created_at=1.0, attributes={"brand": "x"})
    assert decode_item(encode(item)) == item


def test_a_served_feed_item_is_the_model_construct_of_its_fields() -> None:
    """``FeedItem.served`` (the funnel's fast constructor) gives what ``model_construct`` and validation
    give: equal, the same fields set, the same JSON and feed round trip, frozen."""
    fields = {"item_id": "i7", "rank": 0, "score": 0.812345, "source": "explore", "explore": True,
              "propensity": 0.0625, "scores": {"click": 0.5, "retrieval_fresh": 1.0}, "rules": ["boost"]}
    served = FeedItem.served(**fields)
    for other in (FeedItem.model_construct(**fields), FeedItem(**fields)):
        assert served == other
        assert served.model_fields_set == other.model_fields_set
        assert served.model_dump_json() == other.model_dump_json()
    assert served.team is None and served.model_dump(exclude_unset=True) == fields
    feed = Feed(feed_id="f1", user_id="u1", version=1, generated_at=1.7e9, items=[served])
    assert decode_feed(encode(feed)).items == [served]
    with pytest.raises(ValueError):
        served.rank = 1  # type: ignore[misc]
