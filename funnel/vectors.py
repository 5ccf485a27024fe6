"""Vectors used to measure how alike two candidates are (for MMR/DPP diversity).

Content vectors from the catalog when every candidate has one of the same size; otherwise a hashed
encoding of the categories (same categories -> similarity 1), with an item-id part for items that
have no category so that unrelated items stay orthogonal.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import numpy.typing as npt

from core.online import ItemInfo

F32 = npt.NDArray[np.float32]
HASH_DIM = 64


@functools.lru_cache(maxsize=65536)
def _bucket(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=4).digest(), "little") % HASH_DIM


def _unit(x: F32) -> F32:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@functools.lru_cache(maxsize=4096)
def _category_row(categories: tuple[str, ...]) -> F32:
    row = np.zeros(2 * HASH_DIM, np.float32)
    for cat in categories:
        row[_bucket(cat)] += 1.0
    return (row / max(float(np.linalg.norm(row)), 1e-12)).astype(np.float32)


def category_vectors(infos: list[ItemInfo]) -> F32:
    out = np.zeros((len(infos), 2 * HASH_DIM), np.float32)
    for row, info in enumerate(infos):
        if info.categories:
            out[row] = _category_row(tuple(info.categories))
        else:
            out[row, HASH_DIM + _bucket(info.item_id)] = 1.0
    return out


def diversity_vectors(infos: list[ItemInfo]) -> F32:
    vecs = [info.vector for info in infos]
    if vecs and all(v is not None for v in vecs) and len({len(v) for v in vecs if v is not None}) == 1:
        return _unit(np.stack([np.asarray(v, np.float32) for v in vecs if v is not None]))
    return category_vectors(infos)
