"""Pure functions that turn raw reads of the online key space into ``core.online`` answers.

The Redis store and the in-process store fetch the same raw values (ZREVRANGE rows, history entries,
hash fields) each in their own way, then call these, so both answer every read identically.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from core.online import F32, ItemInfo, Scored, UserState
from feature_store.online import decay
from feature_store.online.effects import decode_history

COVISIT_RECENT = 10  # recent history entries whose co-visitation neighbours are read with the user
COVISIT_PER_ITEM = 50
Rows = list[tuple[str, float]]
_SCORE = itemgetter(1)
_chain = itertools.chain.from_iterable


def segment_key(segment: str | None, bandit_segment_key: str) -> str:
    """``None``/``"all"`` -> ``"all"``; ``"mobile"`` -> ``"device:mobile"``; ``"cat:x"`` unchanged."""
    if not segment or segment == "all":
        return "all"
    return segment if ":" in segment else f"{bandit_segment_key}:{segment}"


def epochs(now: float, half_life_s: float) -> list[int]:
    """The two epochs a decayed read combines: the current one and the one before."""
    cur = decay.epoch_of(now, half_life_s)
    return [cur, cur - 1]


def by_score(scores: dict[str, float], k: int) -> Scored:
    """Score descending, ties by member ascending (two C-level stable sorts, no key lambda). From a
    large dict only the rows scoring at least its ``k``-th largest score are sorted (ties kept)."""
    rows: Any = scores.items()
    if len(scores) > 4 * k > 0:
        vals = np.fromiter(scores.values(), np.float64, len(scores))
        cut = float(np.partition(vals, len(vals) - k)[len(vals) - k])
        rows = [row for row in rows if row[1] >= cut]
    return sorted(sorted(rows), key=_SCORE, reverse=True)[:k]


def decayed_top(rows_by_epoch: Sequence[tuple[int, Rows]], now: float, half_life_s: float, k: int) -> Scored:
    """Top-k of the decayed sums over epochs (each epoch's rows: its own top-k by stored score)."""
    acc: dict[str, float] = {}
    for epoch, rows in rows_by_epoch:
        w = decay.epoch_weight(epoch, now, half_life_s)
        acc = _add_epoch(acc, [member for member, _ in rows], [score * w for _, score in rows])
    return by_score(acc, k)


def decayed_top_flat(flats_by_epoch: Sequence[tuple[int, Sequence[Sequence[Any]]]], now: float,
                     half_life_s: float, k: int) -> Scored:
    """:func:`decayed_top` of raw replies: each epoch's ``[member, score, member, score, ...]`` lists
    (one per slice, ``ZREVRANGE ... WITHSCORES`` as hiredis returns it). The same list: members stay
    bytes until the top k are decoded, the scores are parsed and weighted as one array."""
    acc: dict[Any, float] = {}
    for epoch, flats in flats_by_epoch:
        members = list(_chain(flat[0::2] for flat in flats))
        if members:
            scores = np.array(list(_chain(flat[1::2] for flat in flats)), np.float64)
            acc = _add_epoch(acc, members, (scores * decay.epoch_weight(epoch, now, half_life_s)).tolist())
    return [(text(member), score) for member, score in by_score(acc, k)]


def decayed_tops_flat(flats_by_epoch: Sequence[tuple[int, Sequence[Sequence[Any]]]], now: float,
                      half_life_s: float, sizes: Sequence[int]) -> list[Scored]:
    """:func:`decayed_top_flat` of each size ``k`` in ``sizes`` over each slice's first ``k`` rows, from
    one pass over the rows: the members are numbered once and each size's sums are one weighted
    ``bincount`` of the rows ranked below ``k`` in their slice, added in the same order (the same
    floats). Only the rows at or above a size's ``k``-th largest sum reach Python, to be sorted."""
    members: list[Any] = []
    ranks: list[npt.NDArray[Any]] = []
    weighted: list[npt.NDArray[Any]] = []
    for epoch, flats in flats_by_epoch:
        w = decay.epoch_weight(epoch, now, half_life_s)
        for flat in flats:
            members.extend(flat[0::2])
            ranks.append(np.arange(len(flat) // 2))
            weighted.append(np.array(flat[1::2], np.float64) * w)
    if not members:
        return [[] for _ in sizes]
    uniq = list(dict.fromkeys(members))
    number = dict(zip(uniq, range(len(uniq)), strict=True))
    ids = np.fromiter(map(number.__getitem__, members), np.intp, len(members))
    rank, score = np.concatenate(ranks), np.concatenate(weighted)
    return [_top_of_prefix(uniq, ids[rank < k], score[rank < k], k) if k > 0 else [] for k in sizes]


def _top_of_prefix(uniq: list[Any], ids: npt.NDArray[np.intp], score: npt.NDArray[np.float64],
                   k: int) -> Scored:
    """:func:`by_score` of the sums of ``score`` per member id (then decoded)."""
    sums = np.bincount(ids, weights=score, minlength=len(uniq))
    present = np.flatnonzero(np.bincount(ids, minlength=len(uniq)))
    return [(text(member), value) for member, value in top_of_sums(uniq, sums, present, k)]


def top_of_sums(members: Sequence[Any], sums: npt.NDArray[Any], present: npt.NDArray[np.intp],
                k: int) -> list[tuple[Any, float]]:
    """:func:`by_score` of ``{members[i]: sums[i] for i in present}``: the dense-array merges' last step
    (the serving store's ``decayed_tops_flat``, the in-process store's ``merged_top``). Only the members
    scoring at least the ``k``-th largest sum reach Python, to be sorted."""
    if present.size == 0 or k <= 0:
        return []
    vals = sums[present]
    if present.size > k:
        cut = np.partition(vals, present.size - k)[present.size - k]
        keep = vals >= cut
        present, vals = present[keep], vals[keep]
    rows = list(zip(map(members.__getitem__, present.tolist()), vals.tolist(), strict=True))
    return sorted(sorted(rows), key=_SCORE, reverse=True)[:k]


def _add_epoch(acc: dict[Any, float], members: Sequence[Any], weighted: Sequence[float]) -> dict[Any, float]:
    """``acc`` plus one epoch's weighted scores. The first non-empty epoch becomes the dict as it is
    (``0.0 + score * w`` is ``score * w``) when its members are unique, as a slice set's are."""
    if not acc:
        first = dict(zip(members, weighted, strict=True))
        if len(first) == len(members):
            return first
    get = acc.get
    for member, score in zip(members, weighted, strict=True):
        acc[member] = get(member, 0.0) + score
    return acc


def decayed_scores(scores_by_epoch: Sequence[tuple[int, Sequence[float | None]]], now: float,
                   half_life_s: float, n: int) -> F32:
    """Per-member decayed sums (ZMSCORE rows: None where the member has no score)."""
    return decayed_arrays([(epoch, np.array([s if s is not None else 0.0 for s in scores], np.float64))
                           for epoch, scores in scores_by_epoch], now, half_life_s, n)


def decayed_arrays(scores_by_epoch: Sequence[tuple[int, npt.NDArray[np.float64]]], now: float,
                   half_life_s: float, n: int) -> F32:
    """:func:`decayed_scores` of float64 arrays (0.0 where the member has no score)."""
    out = np.zeros(n, np.float64)
    for epoch, scores in scores_by_epoch:
        out += decay.epoch_weight(epoch, now, half_life_s) * scores
    return out.astype(np.float32)


def sum_neighbours(lists: Sequence[Rows], k: int) -> Scored:
    """Co-visit shares summed over recent items: each item's row is normalised to sum 1 (what follows
    it, not how popular it is), and the more recent the item, the more it weighs."""
    acc: dict[str, float] = {}
    get = acc.get
    for rank, rows in enumerate(lists):
        total = sum(map(_SCORE, rows))  # the same additions in the same order as a loop
        if total <= 0:
            continue
        w = 1.0 / ((1.0 + 0.2 * rank) * total)
        for member, score in rows:
            acc[member] = get(member, 0.0) + score * w
    return by_score(acc, k)


def user_state(user_id: str, history: Sequence[str], neighbours: Sequence[Rows], seen: set[str],
               record: dict[str, str], covisit_k: int) -> UserState:
    """``history``: raw history entries (newest first); ``record``: the user hash (upsert)."""
    recent = [item for item, _ in decode_history(history)]
    attrs = json.loads(record.get("attributes") or "{}")
    user = UserState(user_id, recent, seen, max(len(seen), len(recent)), record.get("segment") or None, attrs)
    user.covisit = sum_neighbours(neighbours, covisit_k)
    return user


def history_items(history: Sequence[str], n: int) -> list[str]:
    """The item of each of the newest ``n`` raw history entries (duplicates kept)."""
    return [item for item, _ in decode_history(list(history[:n]))]


def item_info(item_id: str, categories: str | None, attributes: str | None, created_at: str | None,
              active: str | None, vector: bytes | None) -> ItemInfo | None:
    if categories is None and created_at is None and vector is None:
        return None
    vec = np.frombuffer(vector, dtype=np.float32).copy() if vector else None
    return ItemInfo(item_id, json.loads(categories) if categories else [],
                    float(created_at) if created_at else 0.0, active != "0" if active is not None else True,
                    json.loads(attributes) if attributes else {}, vec)


def posterior_arrays(counts: Sequence[tuple[float, float]] | npt.NDArray[np.float64], prior_alpha: float,
                     prior_beta: float) -> tuple[F32, F32]:
    """Beta(prior + clicks, prior + impressions - clicks) from (impressions, clicks) per item."""
    c = np.array(counts, np.float32).reshape(-1, 2)
    alpha = (prior_alpha + c[:, 1]).astype(np.float32)
    beta = (prior_beta + np.maximum(c[:, 0] - c[:, 1], 0.0)).astype(np.float32)
    return alpha, beta


def text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def texts(raws: Sequence[Any]) -> list[str]:
    """``text`` of each (Redis replies are all bytes: one C-level decode per value, no call each)."""
    try:
        return [r.decode() for r in raws]
    except AttributeError:  # a str among them (an in-process store, a test)
        return [text(r) for r in raws]
