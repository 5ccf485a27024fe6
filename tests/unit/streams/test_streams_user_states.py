"""The writer's kept user feature states (issue 14): a state is reused only for the exact bytes it was
written as, and never shared with the batch that changes it."""

from __future__ import annotations

import pytest

from core.events import Interaction
from feature_store import transforms as tf
from feature_store.online import reads
from feature_store.online.keys import Keys
from feature_store.online.reads import StateReads


class _NoRedis:
    cluster = False


def _state(user: str, n: int) -> tf.UserState:
    st = tf.UserState(user)
    for k in range(n):
        ev = Interaction(event_id=f"e{k}", user_id=user, item_id=f"i{k % 3}", type="click",
                         timestamp=100.0 + k)
        tf.apply_user_event(st, ev, ["jazz", f"c{k % 2}"], tf.TransformParams())
    return st


def test_kept_state_is_an_equal_copy_for_the_same_bytes() -> None:
    r = StateReads(_NoRedis(), Keys("t:"))  # type: ignore[arg-type]
    st = _state("u1", 5)
    raw = tf.encode_user(st)
    r.keep_user_states([(raw, st)])
    got = r._user_state("u1", raw)  # noqa: SLF001
    assert got == tf.decode_user(raw) == st
    got.history.append((1.0, "x", "y"))
    got.affinity["new"] = (1.0, 1.0)
    assert len(st.history) == 5 and "new" not in st.affinity  # the kept one is unchanged


def test_other_bytes_are_decoded() -> None:
    r = StateReads(_NoRedis(), Keys("t:"))  # type: ignore[arg-type]
    r.keep_user_states([(tf.encode_user(_state("u1", 5)), _state("u1", 5))])
    other = _state("u1", 7)  # another worker wrote this one meanwhile
    assert r._user_state("u1", tf.encode_user(other)) == other  # noqa: SLF001
    assert r._user_state("u1", None) == tf.UserState("u1")  # noqa: SLF001
    assert r._user_state("u2", tf.encode_user(_state("u2", 2))) == _state("u2", 2)  # noqa: SLF001


def test_oldest_dropped_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    r = StateReads(_NoRedis(), Keys("t:"))  # type: ignore[arg-type]
    monkeypatch.setattr(reads, "USER_STATES_KEPT", 2)
    r.keep_user_states([(b"a", tf.UserState("u1")), (b"b", tf.UserState("u2"))])
    r.keep_user_states([(b"a2", tf.UserState("u1")), (b"c", tf.UserState("u3"))])
    assert sorted(r._users) == ["u1", "u3"]  # noqa: SLF001 - u1 written again: kept, u2 dropped
