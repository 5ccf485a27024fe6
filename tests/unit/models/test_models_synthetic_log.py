from pathlib import Path

import numpy as np
import pytest

from models.baselines import CoVisit, ItemKNN, Pop
from models.data import Interactions, leave_one_out, load_csv, load_items_csv, random_split
from models.metrics import evaluate_lists
from models.synthetic_log import LogConfig, generate_log, items_path, write_synthetic_log

SMALL = LogConfig(n_users=2_000, n_items=3_000, n_events=40_000, n_topics=12, seed=7)


def test_seeded_and_shaped_as_asked():
    a, b = generate_log(SMALL), generate_log(SMALL)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.timestamps, b.timestamps)
    assert not np.array_equal(a.items, generate_log(LogConfig(**{**SMALL.__dict__, "seed": 8})).items)
    assert len(a.users) == 40_000 and set(np.unique(a.users).tolist()) == set(range(2_000))
    assert np.bincount(a.users).min() >= 3 and a.items.max() < 3_000
    assert (np.diff(a.timestamps) >= 0).all()
    span_days = (a.timestamps[-1] - a.timestamps[0]) / 86400
    assert 20 < span_days <= SMALL.days + 1
    assert set(np.unique(a.weights).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_popularity_is_skewed_and_items_appear_only_after_release():
    log = generate_log(SMALL)
    counts = np.sort(np.bincount(log.items, minlength=3_000))[::-1]
    assert counts[:30].sum() > 0.08 * counts.sum()  # top 1% of items: well above their 1% share
    assert (log.item_release[log.items] <= log.timestamps).all()
    assert (log.item_release > log.item_release.min()).mean() > 0.05  # some items arrive later


def _ndcg(model: object, split: object, n_items: int) -> float:
    users = split.eval_users()
    hist = [split.history(int(u))[0] for u in users]
    model.fit(split.fit_sequences(), n_items)
    lists = model.recommend(hist, 50, batch=500)
    pop = np.bincount(np.concatenate(split.fit_sequences()), minlength=n_items).astype(float)
    return evaluate_lists(lists, split.test_item[users], pop, 2_000).means()["ndcg@10"]


def test_recommenders_can_learn_order_taste_and_popularity():
    g = generate_log(SMALL)
    log = Interactions.from_arrays(g.users.astype(str), g.items.astype(str), g.timestamps, g.weights)
    loo, rnd = leave_one_out(log), random_split(log, 0)
    pop, knn, cv = (_ndcg(m, loo, log.n_items) for m in (Pop(), ItemKNN(), CoVisit()))
    assert cv > 2 * pop and knn > 1.5 * pop  # sessions and taste clusters both carry signal
    assert _ndcg(ItemKNN(), rnd, log.n_items) > 1.5 * _ndcg(Pop(), rnd, log.n_items)
    assert pop > 0.002  # popularity alone is above random (10 / 3000 items)


def test_written_files_load(tmp_path: Path):
    events, items = write_synthetic_log(tmp_path / "log.csv", n_users=300, n_items=400, n_events=5_000,
                                        seed=1)
    assert items == items_path(events) == tmp_path / "log.items.csv"
    log = load_csv(events)
    assert len(log) == 5_000 and log.n_users == 300
    assert (log.timestamps == np.round(log.timestamps)).all()
    meta = load_items_csv(items)
    assert len(meta) == 400 and all(len(cats) == 1 for _, cats in meta.values())
    log.attach_items(meta)
    assert all(t and " " in t for t in log.item_text)


def test_refuses_fewer_events_than_users():
    with pytest.raises(ValueError, match="n_events"):
        LogConfig(n_users=10, n_events=5)
