"""The funnel's fast paths compute exactly what the straightforward code they replaced computed.

Each reference below is the previous implementation (a Python loop per candidate); the fast one is
checked against it on random inputs, ties and repeats included, value for value (bit-identical, not
approximately): a speed change must not move a ranking.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.online import ItemInfo
from funnel import features as feats
from funnel.retrieval import SOURCES, CandidateSet, _round_robin, shared_top
from models.rerank import _NEG, _Caps, select_mmr


def _reference_add(cands: dict[str, dict[str, float]], ranks: dict[str, dict[str, int]],
                   order: list[str], source: dict[str, str], name: str,
                   scored: list[tuple[str, float]], by_rank: bool) -> None:
    top = max(s for _, s in scored)
    n = len(scored)
    norms = [1.0 - r / n for r in range(n)] if by_rank or top <= 0 else [max(s, 0.0) / top for _, s in scored]
    column, rank_of = cands.setdefault(name, {}), ranks.setdefault(name, {})
    for rank, ((iid, _), norm) in enumerate(zip(scored, norms, strict=True)):
        if iid not in source:
            source[iid] = name
            order.append(iid)
        if norm > column.get(iid, -1.0):
            column[iid] = norm
        rank_of.setdefault(iid, rank)


def _random_lists(rng: np.random.Generator) -> dict[str, list[tuple[str, float]]]:
    out = {}
    for name in SOURCES:
        n = int(rng.integers(0, 60))
        ids = [f"i{int(j)}" for j in rng.integers(0, 150, n)]  # repeats across and within sources
        scores = np.round(rng.normal(0.3, 1.0, n), 2)  # ties and negatives
        out[name] = list(zip(ids, scores.tolist(), strict=True))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_candidate_set_matches_the_per_item_loop(seed: int):
    rng = np.random.default_rng(seed)
    lists = _random_lists(rng)
    signals: dict[str, dict[str, float]] = {}
    ranks: dict[str, dict[str, int]] = {}
    order: list[str] = []
    source: dict[str, str] = {}
    cands = CandidateSet()
    for name, scored in lists.items():
        if scored:
            _reference_add(signals, ranks, order, source, name, scored, name == "fresh")
        cands.add(name, scored, by_rank=name == "fresh")
    assert cands.item_ids == order and cands.source == source
    assert cands.signals == signals
    assert {n: dict(zip(m.ids, m.ranks.tolist(), strict=True)) for n, m in cands.lists.items()} == ranks
    for iid in order[:20]:
        assert cands.signals_of(iid) == {s: col[iid] for s, col in signals.items() if iid in col}


def _reference_sources(out: np.ndarray, cands: CandidateSet, item_ids: list[str]) -> None:
    signals = cands.signals
    ranks = {n: dict(zip(m.ids, m.ranks.tolist(), strict=True)) for n, m in cands.lists.items()}
    for src in feats.SOURCE_COLUMNS:
        col, rank = signals.get(src, {}), ranks.get(src, {})
        out[:, feats.INDEX[f"{src}_score"]] = [col.get(i, 0.0) for i in item_ids]
        out[:, feats.INDEX[f"{src}_rank"]] = [math.log1p(rank[i]) if i in rank else feats.MISSING_RANK
                                             for i in item_ids]


@pytest.mark.parametrize("seed", range(8))
def test_source_columns_match_the_per_row_lookup(seed: int):
    rng = np.random.default_rng(100 + seed)
    cands = CandidateSet()
    for name, scored in _random_lists(rng).items():
        cands.add(name, scored, by_rank=name == "fresh")
    ids = cands.item_ids[:40] + ["unknown"]
    for item_ids in (ids, ids + ids[:5]):  # a logged feed may list an id twice
        fast = np.full((len(item_ids), len(feats.FEATURES)), np.nan, np.float32)
        slow = fast.copy()
        feats._sources(fast, cands, item_ids)
        _reference_sources(slow, cands, item_ids)
        np.testing.assert_array_equal(fast, slow)


def _reference_round_robin(item_ids: list[str], source: dict[str, str], limit: int) -> list[str]:
    by_src: dict[str, list[str]] = {}
    for iid in item_ids:
        by_src.setdefault(source[iid], []).append(iid)
    queues = [by_src[s][::-1] for s in SOURCES if s in by_src]
    out: list[str] = []
    while len(out) < limit and queues:
        for q in list(queues):
            if q:
                out.append(q.pop())
            else:
                queues.remove(q)
            if len(out) >= limit:
                break
    return out


@pytest.mark.parametrize("limit", [1, 7, 50, 400])
def test_round_robin_matches_the_queue_loop(limit: int):
    rng = np.random.default_rng(limit)
    ids = [f"i{j}" for j in range(300)]
    source = {i: SOURCES[int(rng.integers(0, 5)) if j % 3 else 7] for j, i in enumerate(ids)}
    assert _round_robin(ids, source, limit) == _reference_round_robin(ids, source, limit)


def test_shared_lists_are_read_at_a_few_sizes_and_cut():
    asked: list[int] = []

    def read(n: int) -> list[tuple[str, float]]:
        asked.append(n)
        return [(f"i{j}", float(1000 - j)) for j in range(n)]

    assert shared_top(read, 0) == [] and not asked
    assert shared_top(read, 3) == read(3)
    assert len(shared_top(read, 300)) == 300
    assert set(asked) == {128, 3, 512}


def _reference_mmr(rel: np.ndarray, vectors: np.ndarray, k: int, lam: float, caps: _Caps) -> list[int]:
    max_sim = np.zeros(len(rel), np.float32)
    alive = rel > _NEG / 2
    chosen: list[int] = []
    while len(chosen) < k and alive.any():
        gain = np.where(alive, lam * rel - (1.0 - lam) * max_sim, _NEG)
        pick = int(np.argmax(gain))
        alive[pick] = False
        if not caps.allowed(pick):
            continue
        chosen.append(pick)
        caps.take(pick)
        np.maximum(max_sim, vectors @ vectors[pick], out=max_sim)
    return chosen


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9, 1.0])
def test_mmr_over_contenders_picks_what_the_full_scan_picks(seed: int, lam: float):
    rng = np.random.default_rng(seed)
    n, d = 500, 16
    rel = np.round(rng.random(n), 2).astype(np.float32)  # ties
    rel[rng.integers(0, n, 30)] = _NEG  # dropped by rules
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    if seed % 2:
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cats = [[f"c{int(c)}"] for c in rng.integers(0, 6 if seed % 3 else 60, n)]  # tight caps: refusals
    for k in (1, 20, 60):
        fast_caps, slow_caps = _Caps(cats, 5), _Caps(cats, 5)
        assert select_mmr(rel, vectors, k, lam, fast_caps) == _reference_mmr(rel, vectors, k, lam, slow_caps)
        assert fast_caps.count == slow_caps.count


def test_affinity_memo_matches_the_per_item_max():
    rng = np.random.default_rng(3)
    cats = [f"c{j}" for j in range(8)]
    infos = [ItemInfo(f"i{j}", [cats[int(c)] for c in rng.integers(0, 8, int(rng.integers(0, 3)))])
             for j in range(200)]
    scores = {c: float(s) for c, s in zip(cats, rng.random(8), strict=True)}
    top = max(scores.values())
    slow = [max((scores.get(c, 0.0) for c in info.categories), default=0.0) / top for info in infos]
    assert feats._best_affinity(scores, top, infos) == slow


@pytest.mark.parametrize("n_layers", [1, 2])
def test_traced_user_tower_equals_the_eager_model_bit_for_bit(n_layers: int):
    import torch

    from funnel.modelset import TwoTowerQuery
    from models.two_tower import TwoTowerConfig, TwoTowerModel
    from models.two_tower_serving import TwoTowerServing

    torch.manual_seed(n_layers)
    cfg = TwoTowerConfig(n_items=50, content_dim=6, dim=16, max_len=8, n_layers=n_layers)
    serving = TwoTowerServing(TwoTowerModel(cfg, torch.randn(51, 6)), [f"i{j}" for j in range(50)])
    query = TwoTowerQuery(serving)
    assert query._forward is not None  # traced, not the eager fallback
    rng = np.random.default_rng(0)
    for length in (1, 3, 8, 20):
        recent = [f"i{int(j)}" for j in rng.integers(0, 60, length)]  # i50.. are unknown to the model
        known = [i for i in recent if i in serving.codes]
        got = query.user_vector({"recent_items": recent})
        if not known:
            assert got is None
            continue
        want = serving.user_vectors([list(reversed(known))])[0]
        assert got is not None and np.array_equal(got, want)
        assert query.user_vector({"recent_items": recent}) is got  # cached


def test_memoised_member_packing_equals_hiredis_packing():
    from feature_store.online import pipelined

    ids = ["i1", "i22", "é-ü", "i1", "", "x" * 300]
    for members in (ids, ids[::-1], [], ids[:1]):
        for _ in range(2):  # a cold memo, then a warm one
            got = pipelined.pack_members("ZMSCORE", "{3}:pop:all", members)
            assert got == pipelined.pack("ZMSCORE", "{3}:pop:all", *members)


def test_posterior_rows_by_lookup_match_the_tuple_list():
    from feature_store.online import views

    rng = np.random.default_rng(5)
    rows = {f"i{j}": (1.0, float(rng.integers(0, 10**6)) + float(rng.random()), float(rng.integers(0, 500)))
            for j in range(300)}
    ids = [f"i{int(j)}" for j in rng.integers(0, 300, 500)]
    slow = views.posterior_arrays([rows[i][1:] for i in ids], 1.0, 3.0)
    table = np.array(list(map(rows.__getitem__, ids)), np.float64).reshape(-1, 3)
    fast = views.posterior_arrays(table[:, 1:], 1.0, 3.0)
    assert all(np.array_equal(a, b) for a, b in zip(slow, fast, strict=True))
