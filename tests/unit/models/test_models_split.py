from pathlib import Path

import numpy as np

from models.data import Interactions, leave_one_out, load_csv


def _log():
    # user a: ties at t=5 must keep file order (x before y); user b has only 2 events.
    return Interactions.from_arrays(
        ["a", "b", "a", "a", "a", "b", "a"],
        ["p", "q", "x", "y", "z", "r", "w"],
        [1, 1, 5, 5, 2, 2, 9])


def test_tie_stable_split_keeps_file_order():
    log = _log()
    split = leave_one_out(log)
    a = log.user_ids.index("a")
    names = [log.item_ids[i] for i in split.train_seq[a]]
    assert names == ["p", "z", "x"]
    assert log.item_ids[split.valid_item[a]] == "y"
    assert log.item_ids[split.test_item[a]] == "w"


def test_short_users_keep_everything_in_train():
    log = _log()
    split = leave_one_out(log)
    b = log.user_ids.index("b")
    assert split.test_item[b] == -1 and len(split.train_seq[b]) == 2


def test_no_test_or_validation_interaction_reaches_training():
    rng = np.random.default_rng(0)
    n = 2000
    log = Interactions.from_arrays([f"u{i}" for i in rng.integers(0, 50, n)],
                                   [f"i{i}" for i in rng.integers(0, 300, n)], rng.integers(0, 40, n))
    split = leave_one_out(log)
    held_rows = set()
    for u in range(log.n_users):
        if split.test_item[u] < 0:
            continue
        train = list(zip(split.train_seq[u].tolist(), split.train_ts[u].tolist(), strict=True))
        for item, ts in ((split.valid_item[u], split.valid_ts[u]), (split.test_item[u], split.test_ts[u])):
            held_rows.add((u, int(item), float(ts)))
            assert max(t for _, t in train) <= ts
        # the held-out events are not counted in train (multiset difference)
        rows = np.flatnonzero(log.users == u)
        assert len(train) + 2 == len(rows)
    assert held_rows


def test_load_csv_with_header_and_weight(tmp_path: Path):
    p = tmp_path / "e.csv"
    p.write_text("user_id,item_id,timestamp,weight\nu1,i1,10,2.5\nu1,i2,11,\n")
    log = load_csv(p)
    assert len(log) == 2 and log.weights.tolist() == [2.5, 1.0]
