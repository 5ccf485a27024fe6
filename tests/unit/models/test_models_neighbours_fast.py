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


def _dense_scores(nb: ItemNeighbours, relation: str, recent: list[str], item_ids: list[str]) -> np.ndarray:
    """``scores`` as it was before the sparse lookup: a catalogue-sized array of the row, normalised."""
    out = np.zeros(len(item_ids), np.float32)
    codes = np.array([nb.codes[i] for i in reversed(recent) if i in nb.codes], np.int64)
    if not len(codes) or not item_ids:
        return out
    cols, data = nb._row(relation, codes)
    top = float(data.max()) if len(data) else 0.0
    if top <= 0:
        return out
    dense = np.zeros(len(nb.item_ids), np.float32)
    dense[cols] = np.maximum(data, 0.0) / top
    rows = np.array([nb.codes.get(i, -1) for i in item_ids], np.int64)
    out[rows >= 0] = dense[rows[rows >= 0]]
    return out


@pytest.mark.parametrize("cf_model", ["ease", "itemknn"])
@pytest.mark.parametrize("seed", range(3))
def test_sparse_scores_equal_the_dense_catalogue_lookup_bit_for_bit(seed: int, cf_model: str):
    """The row's sorted columns looked up with ``searchsorted`` give exactly what the catalogue-sized
    array gave: first and last items of the catalogue, unknown ids, repeats, any order, memo or not."""
    rng = np.random.default_rng(seed)
    n_items = 300
    sequences = [rng.integers(0, n_items, int(rng.integers(2, 25))) for _ in range(400)]
    nb = ItemNeighbours.fit(sequences, [f"i{j}" for j in range(n_items)],
                            NeighbourConfig(cf_k=20, cf_model=cf_model))  # type: ignore[arg-type]
    reached = 0
    for _ in range(30):
        recent = [f"i{int(j)}" for j in rng.integers(0, n_items, int(rng.integers(1, 20)))] + ["nope"]
        asked = [f"i{int(j)}" for j in rng.integers(0, n_items, 150)] + ["i0", f"i{n_items - 1}", "nope"]
        memo: dict = {}
        for relation in ("cf", "seq"):
            want = _dense_scores(nb, relation, recent, asked)
            reached += int(np.count_nonzero(want))
            np.testing.assert_array_equal(nb.scores(relation, recent, asked), want)
            np.testing.assert_array_equal(nb.scores(relation, recent, asked, memo), want)
    assert reached > 1000
    assert not nb.scores("seq", ["nope"], ["i1"], {}).any() and not len(nb.scores("cf", ["i1"], [], {}))


def test_a_request_memo_computes_each_relation_row_once(monkeypatch: pytest.MonkeyPatch):
    """With one memo, ``score`` (retrieval) and ``scores`` (features) of a relation share one row
    computation, and give what they give without it; another user's items get their own row."""
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 100, int(rng.integers(2, 15))) for _ in range(200)]
    nb = ItemNeighbours.fit(sequences, [f"i{j}" for j in range(100)], NeighbourConfig(cf_k=20))
    recent, other, asked = ["i3", "i7", "i3", "i50"], ["i8"], [f"i{j}" for j in range(0, 100, 3)]
    want = {r: (nb.score(r, recent, 10), nb.scores(r, recent, asked)) for r in ("seq", "cf")}
    calls: list[str] = []
    row = nb._row
    monkeypatch.setattr(nb, "_row", lambda relation, codes: calls.append(relation) or row(relation, codes))
    memo: dict = {}
    for relation in ("seq", "cf"):
        assert nb.score(relation, recent, 10, memo) == want[relation][0]
        np.testing.assert_array_equal(nb.scores(relation, recent, asked, memo), want[relation][1])
        assert nb.score(relation, recent, 10, memo) == want[relation][0]
    assert calls == ["seq", "cf"]
    assert nb.score("seq", other, 10, memo) == nb.score("seq", other, 10) and calls.count("seq") == 3
