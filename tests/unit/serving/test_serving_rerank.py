"""Re-ranking: rules, caps, freshness, MMR/DPP trade-off."""

from __future__ import annotations

import numpy as np

from core.settings import BusinessRule, RerankSettings
from models.rerank import Candidates, intra_list_similarity, rerank


def _cands(n: int = 12, seed: int = 0) -> Candidates:
    rng = np.random.default_rng(seed)
    cats = [["a"] if i < n // 2 else ["b"] for i in range(n)]
    centres = {"a": rng.standard_normal(8), "b": rng.standard_normal(8)}
    vecs = np.stack([centres[c[0]] + 0.1 * rng.standard_normal(8) for c in cats]).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rel = np.linspace(1.0, 0.5, n).astype(np.float32)  # all "a" items rank above all "b"
    return Candidates([f"i{j}" for j in range(n)], rel, vecs, cats,
                      attributes=[{"adult": j == 1} for j in range(n)])


def test_relevance_only_keeps_order():
    c = _cands()
    out = rerank(c, 4, RerankSettings(diversity="none", category_cap=100, freshness_boost=0))
    assert out.order == [0, 1, 2, 3]


def test_mmr_and_dpp_diversify():
    c = _cands()
    base = rerank(c, 4, RerankSettings(diversity="none", category_cap=100, freshness_boost=0)).order
    for kind in ("mmr", "dpp"):
        div = rerank(c, 4, RerankSettings(diversity=kind, diversity_lambda=0.5, category_cap=100,
                                          freshness_boost=0)).order
        assert intra_list_similarity(c.vectors[div]) < intra_list_similarity(c.vectors[base])
        assert {c.categories[i][0] for i in div} == {"a", "b"}


def test_category_cap():
    c = _cands()
    out = rerank(c, 4, RerankSettings(diversity="none", category_cap=2, freshness_boost=0))
    assert [c.categories[i][0] for i in out.order].count("a") == 2


def test_rules_block_boost_pin_filter():
    c = _cands()
    rules = [BusinessRule(kind="block", name="no-adult", attribute="adult", value=True),
             BusinessRule(kind="boost", name="promo", item_ids=["i9"], factor=10.0),
             BusinessRule(kind="pin", name="sponsor", item_ids=["i11"], position=2)]
    out = rerank(c, 4, RerankSettings(diversity="none", category_cap=100, freshness_boost=0, rules=rules))
    ids = [c.item_ids[i] for i in out.order]
    assert "i1" not in ids and ids[0] == "i9" and ids[2] == "i11"
    assert out.rules[9] == ["promo"] and out.rules[11] == ["sponsor"]
    only_b = [BusinessRule(kind="filter", name="only-b-adult", attribute="adult", value=True)]
    out = rerank(c, 4, RerankSettings(diversity="none", rules=only_b))
    assert [c.item_ids[i] for i in out.order] == ["i1"]


def test_freshness_boost_lifts_new_items():
    c = _cands()
    c.created_at = np.full(len(c), 0.0)
    c.created_at[-1] = 1000.0
    cfg = RerankSettings(diversity="none", category_cap=100, freshness_boost=2.0, freshness_half_life_s=10)
    assert rerank(c, 1, cfg, now=1000.0).order == [len(c) - 1]
