"""The in-process store's popular/trending read kept merged across reads (``merged_top``) answers what
``views.decayed_top`` answers from the slices' rows read afresh."""

from __future__ import annotations

import numpy as np
import pytest

from feature_store.online import decay, views
from feature_store.online.memory_state import KeySpace, zrevrange
from feature_store.online.merged_top import MergedTop

SLICES, HALF_LIFE = 4, 100.0


def _key(name: str, epoch: int, part: int) -> str:
    return f"{name}:{epoch}:{part}"


@pytest.mark.parametrize("seed", range(12))
def test_merged_top_equals_decayed_top_of_fresh_reads(seed: int) -> None:
    rng = np.random.default_rng(seed)
    kv, merged = KeySpace(), MergedTop(SLICES)
    members = int(rng.choice([6, 40, 300]))
    now = 1_000.0
    for step in range(250):
        now += float(rng.exponential(15.0))  # epochs roll over: new slice sets, old ones dropped
        name = str(rng.choice(["pop:all", "pop:cat:a", "trend:all"]))
        cur = decay.epoch_of(now, HALF_LIFE)
        for _ in range(int(rng.integers(1, 6))):
            m = int(rng.integers(members))
            inc = float(rng.integers(-1 if seed % 4 == 0 else 0, 5)) + (0.5 if rng.random() < 0.3 else 0.0)
            kv.apply_op("zi", _key(name, cur, m % SLICES), [f"m{m:03d}", str(inc)])
        if rng.random() < 0.05:
            kv.apply_op("zc", _key(name, cur, int(rng.integers(SLICES))), int(rng.integers(2, 30)))
        k = int(rng.choice([1, 5, 16, 64]))
        epochs = views.epochs(now, HALF_LIFE)
        keys = [(e, [_key(name, e, p) for p in range(SLICES)]) for e in epochs]
        got = merged.top(name, keys, kv.gen, lambda key, k=k: kv.ztop(key, k), now, HALF_LIFE, k)
        fresh = [(e, [row for p in range(SLICES) for row in zrevrange(kv.z.get(_key(name, e, p)), k)])
                 for e in epochs]
        assert got == views.decayed_top(fresh, now, HALF_LIFE, k), step


def test_only_the_slices_written_since_are_read_again() -> None:
    kv, merged, reads = KeySpace(), MergedTop(SLICES), []
    keys = [(7, [_key("pop", 7, p) for p in range(SLICES)])]
    for p in range(SLICES):
        kv.apply_op("zi", _key("pop", 7, p), [f"m{p}", "1"])

    def read(key: str) -> views.Rows:
        reads.append(key)
        return kv.ztop(key, 10)

    merged.top("pop", keys, kv.gen, read, 700.0, HALF_LIFE, 10)
    assert len(reads) == SLICES
    kv.apply_op("zi", _key("pop", 7, 2), ["m2", "5"])
    top = merged.top("pop", keys, kv.gen, read, 700.0, HALF_LIFE, 10)
    assert reads[SLICES:] == [_key("pop", 7, 2)]
    assert top[0][0] == "m2"


def _by_score_of(members: list[str], sums: np.ndarray, present: np.ndarray,
                 k: int) -> list[tuple[str, float]]:
    return views.by_score({members[i]: float(sums[i]) for i in present.tolist()}, k)


@pytest.mark.parametrize("seed", range(10))
def test_top_of_sums_is_by_score_of_the_present_members(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    n = int(rng.choice([1, 9, 200, 3000]))
    members = [f"m{int(j):05d}" for j in rng.permutation(n)]  # dense ids not in name order
    sums = np.round(rng.normal(1.0, 1.0, n), int(rng.integers(0, 3)))  # ties, negatives
    present = np.flatnonzero(rng.random(n) < rng.choice([0.0, 0.3, 1.0]))
    for k in (0, 1, 5, 64, 4000):
        assert views.top_of_sums(members, sums, present, k) == _by_score_of(members, sums, present, k)


@pytest.mark.parametrize("seed", range(6))
def test_both_stores_merges_give_one_answer_for_the_same_slices(seed: int) -> None:
    """The in-process store's kept merge (``MergedTop``) and the serving store's one-pass merge of raw
    replies (``views.decayed_tops_flat``) end in the same step and rank the same slices alike."""
    rng = np.random.default_rng(400 + seed)
    kv, merged, now = KeySpace(), MergedTop(SLICES), 5_000.0
    epochs = views.epochs(now, HALF_LIFE)
    for e in epochs:
        for m in rng.integers(0, 500, 400).tolist():
            kv.apply_op("zi", _key("pop", e, m % SLICES), [f"m{m:03d}", str(float(rng.integers(1, 4)))])
    keys = [(e, [_key("pop", e, p) for p in range(SLICES)]) for e in epochs]
    sizes = [1, 16, 64, 128]
    flats = [(e, [[x for row in zrevrange(kv.z.get(key), max(sizes)) for x in row] for key in ks])
             for e, ks in keys]
    one_pass = views.decayed_tops_flat(flats, now, HALF_LIFE, sizes)
    kept = [merged.top("pop", keys, kv.gen, lambda key, k=k: kv.ztop(key, k), now, HALF_LIFE, k)
            for k in sizes]
    assert kept == one_pass and any(one_pass)
