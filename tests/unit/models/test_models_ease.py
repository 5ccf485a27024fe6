"""EASE: the closed form against a direct least-squares solve, the per-column pruning, and the
learned cf relation choosing EASE or ItemKNN by catalogue size (and recording which)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.baselines import binary_matrix
from models.ease import EASE, top_k_columns
from models.item_neighbours import ItemNeighbours, NeighbourConfig


def _sequences(seed: int, n_users: int = 200, n_items: int = 30) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(n_items, int(rng.integers(2, 12)), replace=False) for _ in range(n_users)]


def test_each_column_is_the_ridge_regression_of_that_item_on_the_others():
    seqs, n, lam = _sequences(0), 30, 5.0
    b = EASE(lam=lam, k=n).fit(seqs, n).sim.toarray()
    x = binary_matrix(seqs, n).toarray().astype(np.float64)
    for j in (0, 7, 29):  # min ||x_j - X_-j w||^2 + lam ||w||^2, solved directly
        others = np.delete(np.arange(n), j)
        a = x[:, others]
        w = np.linalg.solve(a.T @ a + lam * np.eye(n - 1), a.T @ x[:, j])
        np.testing.assert_allclose(b[others, j], w, rtol=1e-3, atol=1e-5)
        assert b[j, j] == 0.0


def test_pruning_keeps_each_columns_largest_magnitudes():
    rng = np.random.default_rng(1)
    b = rng.normal(size=(50, 40)).astype(np.float32)
    kept = top_k_columns(b, 7).toarray()
    for j in range(40):
        want = set(np.argsort(-np.abs(b[:, j]))[:7].tolist())
        assert set(np.flatnonzero(kept[:, j]).tolist()) == want
        np.testing.assert_array_equal(kept[list(want), j], b[list(want), j])


@pytest.mark.parametrize(("max_items", "kind"), [(30, "ease"), (29, "itemknn")])
def test_the_cf_relation_is_ease_up_to_the_size_limit(tmp_path: Path, max_items: int, kind: str):
    ids = [f"i{j}" for j in range(30)]
    nb = ItemNeighbours.fit(_sequences(2), ids, NeighbourConfig(ease_max_items=max_items))
    manifest = nb.save(tmp_path / "nb")
    assert manifest["meta"]["cf_model"] == kind
    back = ItemNeighbours.load(tmp_path / "nb")
    assert back.score("cf", ["i1", "i2"], 5) == nb.score("cf", ["i1", "i2"], 5)
    has_negative = bool((nb._cf.sim.data < 0).any())
    assert has_negative == (kind == "ease")  # cosine weights are never negative; EASE's are
