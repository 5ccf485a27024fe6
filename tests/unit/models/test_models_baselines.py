from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from models.baselines import CoVisit, ItemKNN, Pop, binary_matrix, item_cosine_top_k
from models.data import leave_one_out, load_movielens
from models.metrics import evaluate_lists

ML100K = Path(__file__).resolve().parents[4] / "shared" / "data" / "ml-100k"


def _random_seqs(n_users: int, n_items: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    pop = rng.zipf(1.5, n_items).astype(float)
    p = pop / pop.sum()
    return [rng.choice(n_items, int(rng.integers(1, 15)), p=p) for _ in range(n_users)]


def _recbole_dense(x: np.ndarray, k: int, shrink: float) -> np.ndarray:
    """RecBole's ComputeSimilarity, written densely column by column as its loop does."""
    norms = np.sqrt((x ** 2).sum(axis=0))
    w = np.zeros((x.shape[1], x.shape[1]))
    for j in range(x.shape[1]):
        col = x.T @ x[:, j]
        col[j] = 0.0
        col = col / (norms[j] * norms + shrink + 1e-6)
        top = np.argsort(-col, kind="stable")[:k]
        top = top[col[top] != 0]
        w[top, j] = col[top]
    return w


@pytest.mark.parametrize("block_nnz", [1, 50, 10_000_000])
def test_item_similarity_matches_recbole_column_top_k(block_nnz):
    seqs = _random_seqs(120, 40, seed=1)
    x = binary_matrix(seqs, 40)
    got = item_cosine_top_k(x, k=5, shrink=2.0, block_nnz=block_nnz).toarray()
    ref = _recbole_dense(x.toarray(), k=5, shrink=2.0)
    # each TARGET column keeps its 5 best sources; ties at the 5th place may pick different items
    assert ((got != 0).sum(axis=0) <= 5).all()
    for j in range(40):
        np.testing.assert_allclose(np.sort(got[:, j])[::-1], np.sort(ref[:, j])[::-1], rtol=1e-5)
    assert (got.diagonal() == 0).all()
    # rows are not pruned: a popular source item serves as neighbour of more than 5 targets
    assert (got != 0).sum(axis=1).max() > 5


def test_itemknn_score_is_history_times_column_pruned_w():
    seqs = _random_seqs(60, 30, seed=2)
    knn = ItemKNN(k=3).fit(seqs, 30)
    hist = [np.array([0, 4, 4]), np.array([7])]
    expected = np.array([[1.0 if i in {0, 4} else 0.0 for i in range(30)], np.eye(30)[7]]) @ knn.sim.toarray()
    np.testing.assert_allclose(knn.score(hist), expected, rtol=1e-6)


def test_itemknn_stays_sparse_on_a_wide_catalogue():
    n_items = 50_000
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, n_items, 20) for _ in range(2_000)]
    knn = ItemKNN(k=10).fit(seqs, n_items)
    assert sp.issparse(knn.sim) and knn.sim.nnz <= 10 * n_items
    assert knn.score(seqs[:3]).shape == (3, n_items)


def test_covisit_prefers_the_next_item_and_pop_counts():
    seqs = [np.array([0, 1, 2]), np.array([0, 1, 3]), np.array([4, 0])]
    cv = CoVisit(window=1, last_n=1, backward=0.0).fit(seqs, 5)
    s = cv.score([np.array([2, 0]), np.array([1])])
    assert int(np.argmax(s[0])) == 1 and s[0, 1] == pytest.approx(1.0)
    assert s[1, 2] == pytest.approx(0.5) and s[1, 3] == pytest.approx(0.5)
    assert Pop().fit(seqs, 5).score([np.array([0])])[0].tolist() == [3, 2, 1, 1, 1]


def test_covisit_never_pairs_across_users():
    cv = CoVisit(window=3).fit([np.array([0, 1]), np.array([2, 3])], 4)
    assert cv.matrix[1, 2] == 0 and cv.matrix[0, 3] == 0 and cv.matrix[0, 1] > 0


@pytest.mark.skipif(not ML100K.is_dir(), reason="MovieLens-100K is not at ../shared/data/ml-100k")
def test_itemknn_reproduces_recbole_on_ml100k():
    log = load_movielens(ML100K)
    split = leave_one_out(log)
    users = split.eval_users()
    hist = [split.history(int(u))[0] for u in users]
    pop = np.bincount(np.concatenate(split.train_seq), minlength=log.n_items).astype(float)
    knn = ItemKNN(k=100).fit(split.train_seq, log.n_items)
    lists = knn.recommend(hist, 50, batch=200)
    ndcg = evaluate_lists(lists, split.test_item[users], pop, log.n_users).means()["ndcg@10"]
    assert ndcg == pytest.approx(0.0629, abs=0.003)  # RecBole's figure; row pruning scored 0.0545
    # fitted on train + validation, as the harness fits every baseline: still within the band
    knn = ItemKNN(k=100).fit(split.fit_sequences(), log.n_items)
    lists = knn.recommend(hist, 50, batch=200)
    ndcg = evaluate_lists(lists, split.test_item[users], pop, log.n_users).means()["ndcg@10"]
    assert ndcg == pytest.approx(0.0629, abs=0.005)


def test_recommend_matches_dense_ranking_for_every_baseline():
    seqs = _random_seqs(300, 80, seed=4)
    hist = seqs[:50]
    for model in (Pop(), ItemKNN(k=20), CoVisit()):
        model.fit(seqs, 80)
        fast = model.recommend(hist, 10, batch=16, seed=0)
        dense = model.score(hist)
        for r, h in enumerate(hist):
            s = dense[r].copy()
            s[h] = -np.inf
            assert not set(fast[r].tolist()) & set(h.tolist())
            # the scores along the list never increase, and nothing left out beats the list's last item
            got = s[fast[r]]
            assert (np.diff(got) <= 0).all(), type(model).__name__
            rest = np.delete(s, fast[r])
            assert rest.max() <= got[-1]


def test_pop_recommend_skips_seen_items_in_a_single_global_order():
    pop = Pop().fit([np.array([0, 0, 0, 1, 1, 2])], 5)
    lists = pop.recommend([np.array([0]), np.array([1, 2]), np.array([0, 1, 2, 3, 4])], 3)
    assert lists[0, :2].tolist() == [1, 2] and lists[1, 0] == 0
    assert lists[2].tolist() == [-1, -1, -1]
