"""ItemNeighbours.score computes a user's row with scipy's kernel called directly and a partial sort;
both must give exactly what the public scipy product and a full stable sort give."""

from __future__ import annotations

import numpy as np
import pytest

from models.item_neighbours import ItemNeighbours, NeighbourConfig, stable_top


def _reference_score(nb: ItemNeighbours, relation: str, recent: list[str], k: int) -> list[tuple[str, float]]:
    codes = np.array([nb.codes[i] for i in reversed(recent) if i in nb.codes], np.int64)
    row = (nb._cf if relation == "cf" else nb._seq).score_sparse([codes])
    top = np.argsort(-row.data, kind="stable")[:k]
    return [(nb.item_ids[int(row.indices[j])], float(row.data[j])) for j in top if row.data[j] > 0]


@pytest.mark.parametrize("cf_model", ["ease", "itemknn"])
@pytest.mark.parametrize("seed", range(4))
def test_scores_equal_the_scipy_product_with_ties_and_repeats(seed: int, cf_model: str):
    rng = np.random.default_rng(seed)
    n_items = 300
    sequences = [rng.integers(0, 40 if u % 2 else n_items, int(rng.integers(2, 30))) for u in range(400)]
    cfg = NeighbourConfig(cf_k=20, cf_model=cf_model)  # type: ignore[arg-type]
    nb = ItemNeighbours.fit(sequences, [f"i{j}" for j in range(n_items)], cfg)
    for _ in range(60):
        recent = [f"i{int(j)}" for j in rng.integers(0, 40, int(rng.integers(1, 25)))]  # repeats
        recent += ["not-in-the-model"]
        for relation in ("cf", "seq"):
            for k in (1, 10, 200):
                assert nb.score(relation, recent, k) == _reference_score(nb, relation, recent, k)


@pytest.mark.parametrize("k", [1, 5, 50, 1000])
def test_stable_top_equals_a_full_stable_sort(k: int):
    rng = np.random.default_rng(k)
    data = np.round(rng.random(700), 1).astype(np.float32)  # many ties
    np.testing.assert_array_equal(stable_top(data, k), np.argsort(-data, kind="stable")[:k])


@pytest.mark.parametrize("cf_model", ["ease", "itemknn"])
def test_scores_of_given_items_are_the_rows_normalised_scores(cf_model: str):
    """``scores`` gives every item what ``score`` gives it over the row's best score (as the funnel
    normalises a source's list), 0 for items the row does not reach and for unknown ids."""
    rng = np.random.default_rng(7)
    n_items = 200
    sequences = [rng.integers(0, n_items, int(rng.integers(2, 20))) for _ in range(300)]
    nb = ItemNeighbours.fit(sequences, [f"i{j}" for j in range(n_items)],
                            NeighbourConfig(cf_k=20, cf_model=cf_model))  # type: ignore[arg-type]
    for _ in range(20):
        recent = [f"i{int(j)}" for j in rng.integers(0, n_items, int(rng.integers(1, 12)))]
        asked = [f"i{j}" for j in range(n_items)] + ["unknown"]
        for relation in ("cf", "seq"):
            full = dict(nb.score(relation, recent, n_items))
            best = max(full.values())
            want = [full.get(i, 0.0) / best for i in asked]
            np.testing.assert_allclose(nb.scores(relation, recent, asked), want, rtol=1e-6, atol=1e-7)
    assert not nb.scores("seq", ["unknown"], ["i1"]).any()
