"""The in-process store's sorted-set cap (ZREMRANGEBYRANK 0 -(cap+1)) keeps exactly the members a full
sort by (score, member) keeps, ties on the score included, whatever the excess."""

from __future__ import annotations

import numpy as np

from feature_store.online.memory_state import KeySpace


def _reference(zset: dict[str, float], cap: int) -> dict[str, float]:
    return dict(sorted(zset.items(), key=lambda kv: (kv[1], kv[0]))[-cap:]) if len(zset) > cap else dict(zset)


def test_cap_keeps_what_a_full_sort_keeps():
    rng = np.random.default_rng(0)
    for step in range(400):
        kv = KeySpace()
        n = int(rng.integers(1, 60))
        scores = rng.integers(0, 6, n) / 4.0 if step % 2 else rng.random(n)  # many ties, or none
        zset = {f"m{int(j)}": float(s) for j, s in zip(rng.permutation(1000)[:n], scores, strict=True)}
        kv.z["k"] = dict(zset)
        cap = int(rng.integers(1, n + 3))
        kv.apply_op("zc", "k", cap)
        assert kv.z["k"] == _reference(zset, cap), step
        assert kv.gen["k"] == 1
