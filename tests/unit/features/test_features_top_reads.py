"""Top-k reads of the online state: the in-process ZREVRANGE cache, kept across writes (ZINCRBY, ZADD, caps),
reads as a fresh sort would; views.by_score orders as two full sorts."""

from __future__ import annotations

import numpy as np
import pytest

from feature_store.online.memory_state import KeySpace, zrevrange


@pytest.mark.parametrize("members,negative", [(30, False), (400, False), (400, True)])
def test_cached_top_after_increments_equals_a_fresh_sort(members: int, negative: bool) -> None:
    rng = np.random.default_rng(members + negative)
    kv = KeySpace()
    for step in range(600):
        bumped = rng.integers(0, members, size=int(rng.integers(1, 6)))
        incs = rng.integers(-2 if negative else 0, 4, size=len(bumped)).astype(float)
        flat: list[str] = []
        for m, inc in zip(bumped, incs, strict=True):
            flat += [f"m{m:03d}", str(inc)]
        kv.apply_op("zi", "pop", flat)
        if step % 50 == 49:  # the covisit sets' cap, read before and after
            kv.ztop("pop", 100)
            kv.apply_op("zc", "pop", int(rng.choice([20, 70, 300])))
        if step % 7 == 3:  # ZADD (the fresh list) and, rarely, ZREM
            m = f"m{int(rng.integers(members)):03d}"
            kv.apply_op("za", "pop", [str(float(rng.integers(-2 if negative else 0, 12))), m])
        if step % 61 == 60:
            kv.apply_op("zr", "pop", [f"m{int(rng.integers(members)):03d}" for _ in range(3)])
        k = int(rng.choice([1, 10, 64, 100]))
        assert kv.ztop("pop", k) == zrevrange(kv.z["pop"], k), step


def test_the_cache_is_refreshed_not_rebuilt_while_scores_only_grow(monkeypatch: pytest.MonkeyPatch) -> None:
    import feature_store.online.memory_state as ms

    kv = KeySpace()
    kv.apply_op("zi", "pop", [x for m in range(500) for x in (f"m{m}", str(m % 7))])
    first = kv.ztop("pop", 10)
    sorted_sizes: list[int] = []
    real = ms.zrevrange
    monkeypatch.setattr(ms, "zrevrange", lambda zs, k: sorted_sizes.append(len(zs or ())) or real(zs, k))
    kv.apply_op("zi", "pop", ["m3", "100"])
    kv.apply_op("zi", "pop", ["m404", "0.5"])  # stays below the cache: not in the top
    assert kv.ztop("pop", 10) == [("m3", 103.0), *first[:9]]
    assert sorted_sizes == [64 + 2]  # the cached rows and the two bumped members, not the 500
    kv.apply_op("zi", "pop", ["m3", "-50"])  # a cached score went down: sorted again from the set
    assert kv.ztop("pop", 10) == real(kv.z["pop"], 10)
    assert sorted_sizes[-1] == 500


@pytest.mark.parametrize("n,k,ties", [(4096, 128, False), (4096, 128, True), (600, 1, True), (300, 64, False),
                                      (50, 64, True), (1000, 0, False)])
def test_by_score_orders_as_two_full_sorts(n: int, k: int, ties: bool) -> None:
    """Score descending, ties by member ascending, also when only the top of a large dict is sorted."""
    from operator import itemgetter

    from feature_store.online.views import by_score

    rng = np.random.default_rng(n + k)
    scores = {f"m{int(rng.integers(10**6))}": float(rng.integers(5)) if ties else float(rng.random())
              for _ in range(n)}
    full = sorted(sorted(scores.items()), key=itemgetter(1), reverse=True)[:k]
    assert by_score(scores, k) == full
