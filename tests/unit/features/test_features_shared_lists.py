"""The serving store's shared lists (popular, trending, fresh): views.decayed_top_flat merges raw replies
exactly as decayed_top merges parsed rows, and SharedLists reloads a list's sizes together from one
read, in the background past 3/4 of the TTL, never storing a reload begun before a clear;
views.decayed_tops_flat gives every size's decayed_top_flat of its prefixes from one pass."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from core.online import Scored
from feature_store.online import pipelined, views
from feature_store.online.shared_lists import SharedLists


def _flats(rng: np.random.Generator, slices: int, k: int, universe: int, dups: bool) -> list[list[bytes]]:
    """Per slice a ZREVRANGE WITHSCORES reply: members unique to their slice (unless ``dups``), scores
    descending with ties, as Redis formats doubles."""
    out = []
    for s in range(slices):
        n = int(rng.integers(0, k + 1))
        ids = rng.integers(0, universe, n) if dups else rng.choice(np.arange(s, universe, slices), min(
            n, len(range(s, universe, slices))), replace=False)
        scores = np.sort(np.round(rng.random(len(ids)) * 5, int(rng.integers(0, 3))))[::-1]
        rows = zip(ids, scores, strict=True)
        out.append([x for m, v in rows for x in (b"m%05d" % m, repr(float(v)).encode())])
    return out


@pytest.mark.parametrize("seed", range(12))
def test_decayed_top_flat_equals_decayed_top_of_parsed_rows(seed: int):
    rng = np.random.default_rng(seed)
    now, half_life = 1_700_000_000.0 + seed * 977.0, float(rng.choice([600.0, 3600.0, 86400.0]))
    epochs = views.epochs(now, half_life)
    sizes, universes = [0, 5, 64, 300], [40, 4000]
    by_epoch = [(e, _flats(rng, 16, int(rng.choice(sizes)), int(rng.choice(universes)), seed % 4 == 3))
                for e in epochs]
    for k in (1, 7, 128, 1024):
        rows = [(e, [row for flat in flats for row in pipelined.flat_rows(flat)]) for e, flats in by_epoch]
        expected = views.decayed_top(rows, now, half_life, k)
        got = views.decayed_top_flat(by_epoch, now, half_life, k)
        assert got == expected and all(isinstance(m, str) for m, _ in got)


@pytest.mark.parametrize("seed", range(12))
def test_every_sizes_merge_from_one_pass_equals_its_own_merge_of_the_prefixes(seed: int):
    rng = np.random.default_rng(100 + seed)
    now, half_life = 1_700_000_000.0 + seed * 977.0, float(rng.choice([600.0, 3600.0, 86400.0]))
    by_epoch = [(e, _flats(rng, 16, int(rng.choice([0, 5, 64, 300])), int(rng.choice([40, 4000])),
                           seed % 4 == 3)) for e in views.epochs(now, half_life)]
    sizes = [0, 1, 4, 7, 128, 256, 1024]
    def own(k: int) -> Scored:
        return views.decayed_top_flat([(e, [f[:2 * k] for f in fs]) for e, fs in by_epoch], now, half_life, k)

    expected = [own(k) if k > 0 else [] for k in sizes]
    assert views.decayed_tops_flat(by_epoch, now, half_life, sizes) == expected
    assert views.decayed_tops_flat([(e, [[] for _ in fs]) for e, fs in by_epoch], now, half_life, sizes) == [
        [] for _ in sizes]


def test_decayed_top_flat_takes_str_members_and_float_scores():
    flats = [(10, [["b", 2.0, "a", 2.0]]), (9, [["a", 1.0, "c", 0.5]])]
    rows = [(e, list(zip(f[0][0::2], f[0][1::2], strict=True))) for e, f in flats]
    assert views.decayed_top_flat(flats, 36_000.0, 3600.0, 3) == views.decayed_top(rows, 36_000.0, 3600.0, 3)


class _Reads:
    """A list whose every read is counted; size k gets the top-k of the current version's rows."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.version = 0
        self.started, self.gate = threading.Event(), threading.Event()
        self.gate.set()

    def load(self, sizes: Sequence[int]) -> list[Scored]:
        version = self.version  # what Redis held when the read began
        self.started.set()
        self.gate.wait(5)
        self.calls.append(list(sizes))
        rows = [(f"v{version}-{j}", float(100 - j)) for j in range(100)]
        return [rows[:k] for k in sizes]


def _settle(lists: SharedLists, group: tuple[str, ...]) -> None:
    deadline = time.monotonic() + 5
    while group in lists._reloading and time.monotonic() < deadline:
        time.sleep(0.005)


def test_a_lists_sizes_are_reloaded_together_from_one_read():
    lists, reads, group = SharedLists(ttl_s=1.0), _Reads(), ("pop", None)
    for k in (8, 32, 16):
        assert lists.get(group, k, 100.0, reads.load)[-1][0] == f"v0-{k - 1}"
    assert reads.calls == [[8], [32], [16]]  # each size's first read is its own, synchronous
    assert lists.get(group, 8, 100.7, reads.load)[0][0] == "v0-0"  # within 3/4 of the TTL: no read
    reads.version = 1
    assert lists.get(group, 8, 100.8, reads.load)[0][0] == "v0-0"  # past 3/4: the cached list...
    _settle(lists, group)
    assert reads.calls[-1] == [8, 16, 32]  # ...and one background read at every size
    for k in (8, 16, 32):  # each size as its own read at that time would give
        assert lists.get(group, k, 100.9, reads.load) == [(f"v1-{j}", float(100 - j)) for j in range(k)]
    assert len(reads.calls) == 4
    assert lists.get(("pop", "mobile"), 8, 100.9, reads.load)  # another group: its own read
    assert len(reads.calls) == 5


def test_past_the_ttl_a_request_reads_its_size_itself():
    lists, reads, group = SharedLists(ttl_s=1.0), _Reads(), ("trend", None)
    lists.get(group, 4, 50.0, reads.load)
    reads.version = 1
    assert lists.get(group, 4, 51.5, reads.load)[0][0] == "v1-0" and reads.calls == [[4], [4]]
    lists.get(group, 4, 49.0, reads.load)  # an earlier request time never reuses a later read
    assert reads.calls == [[4], [4], [4]]


def test_a_reload_begun_before_a_clear_is_not_stored():
    lists, reads, group = SharedLists(ttl_s=1.0), _Reads(), ("pop", None)
    lists.get(group, 4, 10.0, reads.load)
    reads.version = 1
    reads.started.clear()
    reads.gate.clear()
    lists.get(group, 4, 10.8, reads.load)  # starts a background reload (of version 1), held at the gate
    assert reads.started.wait(5)
    lists.clear()  # e.g. the eraser removed items from the lists
    reads.version = 2
    reads.gate.set()
    _settle(lists, group)
    assert lists.get(group, 4, 10.9, reads.load)[0][0] == "v2-0"  # read again, not the held reload's
