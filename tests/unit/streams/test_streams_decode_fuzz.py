"""Hypothesis on the worker's decoder: arbitrary bytes are either a valid record or an EventError with
a reason, never another exception; every valid event decodes back to itself; and the fast path
(pydantic from JSON bytes) and the reference decoder agree on what they accept."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.events import EventError, Interaction, InteractionType, encode
from core.topics import INPUT_TOPICS
from streams.decode import DECODERS, Skew, validate

NOW = 1.8e9
SKEW = Skew(3600.0, 365 * 86400.0)
ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
interactions = st.builds(
    Interaction, event_id=ids, user_id=ids, item_id=ids,
    type=st.sampled_from(list(InteractionType)),
    timestamp=st.floats(min_value=NOW - 86400, max_value=NOW), value=finite,
    context=st.dictionaries(st.sampled_from(["device", "page"]), st.text(max_size=10), max_size=2))
json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=6), max_leaves=20)
FIELDS = ["type", "timestamp", "value", "propensity", "context", "extra", "user_id"]
mutated = st.fixed_dictionaries({"event_id": ids, "user_id": ids, "item_id": ids}).flatmap(
    lambda base: st.dictionaries(st.sampled_from(FIELDS), json_values).map(lambda d: {**base, **d}))
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


REASONS = {"oversized", "unparseable", "unknown_version", "non_finite", "missing_field", "unknown_type",
           "unknown_field", "invalid_field", "future_timestamp", "stale_timestamp", "future_created_at"}


def _check(base: str, raw: bytes) -> None:
    try:
        validate(base, raw, NOW, SKEW)
    except EventError as exc:  # anything else propagates and fails the example
        assert exc.reason in REASONS and exc.detail, exc


@FUZZ
@given(base=st.sampled_from(INPUT_TOPICS), raw=st.binary(max_size=2000))
def test_arbitrary_bytes_are_a_record_or_a_reason(base: str, raw: bytes) -> None:
    _check(base, raw)


@FUZZ
@given(base=st.sampled_from(INPUT_TOPICS), doc=json_values | mutated)
def test_arbitrary_json_is_a_record_or_a_reason(base: str, doc: object) -> None:
    raw = json.dumps(doc, allow_nan=True).encode()
    _check(base, raw)
    fast_ok = True
    try:
        validate(base, raw, NOW, SKEW)
    except EventError:
        fast_ok = False
    try:
        DECODERS[base](raw)
        ref_ok = True
    except EventError:
        ref_ok = False
    assert fast_ok <= ref_ok  # the fast path never accepts what the reference refuses


@FUZZ
@given(event=interactions)
def test_every_valid_event_decodes_to_itself(event: Interaction) -> None:
    assert validate("interactions", encode(event), NOW, SKEW) == event
