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


@pytest.mark.parametrize("seed", range(40))
def test_cached_top_under_frequent_caps_and_removals_equals_a_fresh_sort(seed: int) -> None:
    """Small sets capped often (members removed, then bumped back in), ZADD/ZREM between reads."""
    rng = np.random.default_rng(seed)
    members, kv = int(rng.choice([5, 50, 70, 200])), KeySpace()
    for step in range(300):
        flat: list[str] = []
        for m in rng.integers(0, members, size=int(rng.integers(1, 8))):
            flat += [f"m{m:03d}", str(float(rng.integers(-1 if seed % 3 == 0 else 0, 4)))]
        kv.apply_op("zi", "pop", flat)
        r = rng.random()
        if r < 0.1:
            kv.apply_op("zc", "pop", int(rng.integers(3, 120)))
        elif r < 0.2:
            kv.apply_op("za", "pop", [str(float(rng.integers(0, 12))), f"m{int(rng.integers(members)):03d}"])
        elif r < 0.23:
            kv.apply_op("zr", "pop", [f"m{int(rng.integers(members)):03d}"])
        if rng.random() < 0.5:
            k = int(rng.choice([1, 3, 10, 64, 65, 100]))
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
    kv.apply_op("zi", "pop", [first[4][0], "0.25"])  # a cached member moves up within the cache
    bumped = (first[4][0], first[4][1] + 0.25)
    assert kv.ztop("pop", 10) == [("m3", 103.0), *sorted([*first[:4], bumped, *first[5:9]],
                                                         key=lambda r: (r[1], r[0]), reverse=True)]
    assert sorted_sizes == []  # moved in the cached list: nothing sorted
    kv.apply_op("zi", "pop", ["m3", "-50"])  # a cached score went down: sorted again from the set
    assert kv.ztop("pop", 10) == real(kv.z["pop"], 10)
    assert sorted_sizes[-1] == 500


def test_a_cap_that_removes_cached_members_leaves_the_set_in_the_cache() -> None:
    """A small set read whole, then capped below its size: the cache is what is left, in order."""
    kv = KeySpace()
    kv.apply_op("zi", "s", [x for m in range(40) for x in (f"m{m:02d}", str(m % 9))])
    assert len(kv.ztop("s", 64)) == 40
    kv.apply_op("zi", "s", ["m00", "30", "new", "1"])
    kv.apply_op("zc", "s", 12)
    assert kv.ztop("s", 64) == zrevrange(kv.z["s"], 64)
    assert len(kv.ztop("s", 64)) == 12


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


@pytest.mark.parametrize("seed", range(8))
def test_zrevrange_is_redis_order_by_sort_or_heap(seed: int) -> None:
    """Score descending, ties by member descending, whichever of the two paths a size takes."""
    rng = np.random.default_rng(700 + seed)
    n = int(rng.choice([1, 50, 2000]))
    zset = {f"m{int(j)}": float(s) for j, s in zip(rng.permutation(n), np.round(rng.normal(0, 1, n), 1),
                                                    strict=True)}
    for k in (1, 3, 64, 250, 3000):
        assert zrevrange(zset, k) == sorted(zset.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:k]
