import numpy as np
import pytest

from models.data import Interactions, global_time_split, leave_one_out, random_split, validation_holdout


def _log(seed: int = 0, n: int = 3000) -> Interactions:
    rng = np.random.default_rng(seed)
    return Interactions.from_arrays([f"u{i}" for i in rng.integers(0, 80, n)],
                                    [f"i{i}" for i in rng.integers(0, 300, n)],
                                    rng.integers(0, 500, n).astype(float), rng.integers(1, 6, n))


def _multiset(log: Interactions, u: int) -> list[tuple[int, float]]:
    rows = np.flatnonzero(log.users == u)
    return sorted(zip(log.items[rows].tolist(), log.timestamps[rows].tolist(), strict=True))


def test_global_split_is_strict_at_the_cut():
    log = _log()
    split = global_time_split(log, 0.8)
    cut = split.cut_time
    assert split.protocol == "global_time" and cut == pytest.approx(np.quantile(log.timestamps, 0.8))
    for u in range(log.n_users):
        items, ts, _ = split.history(u)
        assert (ts < cut).all()
        if split.test_item[u] < 0:
            continue
        assert split.test_ts[u] >= cut and split.valid_ts[u] < cut
        # test = the user's FIRST event at or after the cut
        rows = np.flatnonzero((log.users == u) & (log.timestamps >= cut))
        assert split.test_ts[u] == log.timestamps[rows].min()
        # train + validation = every event of u before the cut, validation the last of them
        before = np.flatnonzero((log.users == u) & (log.timestamps < cut))
        assert len(items) == len(before) and split.valid_ts[u] == log.timestamps[before].max()


def test_global_split_evaluates_only_users_with_history_and_a_positive():
    log = Interactions.from_arrays(["a", "a", "a", "b", "c", "c", "c"],
                                   ["x", "y", "z", "x", "y", "z", "w"],
                                   [1, 2, 10, 10, 1, 10, 11], [5, 5, 1, 5, 5, 2, 4])
    split = global_time_split(log, 0.5, min_positive_weight=4)
    a, b, c = (log.user_ids.index(x) for x in "abc")
    assert split.cut_time == 10.0
    assert split.test_item[a] == -1                       # its only later event is not a positive
    assert split.test_item[b] == -1                       # no history before the cut
    assert log.item_ids[split.test_item[c]] == "w"        # first POSITIVE after the cut
    assert log.item_ids[split.valid_item[c]] == "y" and len(split.train_seq[c]) == 0
    assert split.eval_users().tolist() == [c]
    assert [log.item_ids[i] for i in split.fit_sequences()[a]] == ["x", "y"]


def test_random_split_is_seeded_and_loses_nothing():
    log = _log(1)
    one, same, other = random_split(log, 3), random_split(log, 3), random_split(log, 4)
    assert np.array_equal(one.test_item, same.test_item) and np.array_equal(one.valid_ts, same.valid_ts)
    assert not np.array_equal(one.test_item, other.test_item)
    for u in range(log.n_users):
        items, ts, _ = one.history(u)
        assert (np.diff(ts) >= 0).all()
        held = list(zip(items.tolist(), ts.tolist(), strict=True))
        if one.test_item[u] >= 0:
            held.append((int(one.test_item[u]), float(one.test_ts[u])))
        assert sorted(held) == _multiset(log, u)


def test_random_split_is_not_always_the_last_event():
    split = random_split(_log(2), 0)
    loo = leave_one_out(_log(2))
    users = split.eval_users()
    assert np.array_equal(users, loo.eval_users())  # same minimum-length rule
    assert (split.test_ts[users] < loo.test_ts[users]).mean() > 0.5


def test_short_users_are_not_evaluated_in_random_split():
    log = Interactions.from_arrays(["a", "a", "b", "b", "b"], ["x", "y", "x", "y", "z"], [1, 2, 1, 2, 3])
    split = random_split(log, 0)
    a = log.user_ids.index("a")
    assert split.test_item[a] == -1 and split.valid_item[a] == -1 and len(split.train_seq[a]) == 2
    assert len(split.history(log.user_ids.index("b"))[0]) == 2


def test_leave_one_out_history_appends_validation():
    log = _log(3)
    split = leave_one_out(log)
    for u in split.eval_users()[:20]:
        items, ts, w = split.history(int(u))
        assert items[-1] == split.valid_item[u] and ts[-1] == split.valid_ts[u]
        assert w[-1] == split.valid_weight[u]
        assert np.array_equal(split.history(int(u), validation=False)[0], split.train_seq[u])


def test_global_split_rejects_a_bad_quantile():
    with pytest.raises(ValueError, match="quantile"):
        global_time_split(_log(), 1.0)


@pytest.mark.parametrize("make", [leave_one_out, global_time_split, lambda log: random_split(log, 3)])
def test_validation_holdout_is_the_split_one_step_earlier(make):
    log = _log(4)
    split = make(log)
    val = validation_holdout(split)
    assert val.protocol == split.protocol
    users = val.eval_users()
    assert len(users) and set(users.tolist()) <= set(np.flatnonzero(split.valid_item >= 0).tolist())
    for u in range(log.n_users):
        if val.test_item[u] < 0:
            continue
        # the validation event is held out; the history is the old training events, test never seen
        assert (val.test_item[u], val.test_ts[u]) == (split.valid_item[u], split.valid_ts[u])
        items, ts, _ = val.history(u)
        np.testing.assert_array_equal(np.sort(items), np.sort(split.train_seq[u]))
        assert val.valid_item[u] == split.train_seq[u][-1] and len(val.train_seq[u]) == len(items) - 1
    assert [len(s) for s in val.fit_sequences()] == [len(s) for s in split.train_seq]
