"""Re-ranking: business rules, freshness boost, diversity (MMR or DPP) under per-category caps.

Pure numpy. The pipeline hands over the ranked candidates as aligned arrays; :func:`rerank`
returns the chosen order plus the rules each chosen item hit.

Rules (``core.settings.BusinessRule``), applied in this order:
- ``block``: drop items listed in ``item_ids`` or whose ``attribute`` equals ``value``;
- ``filter``: keep only items whose ``attribute`` equals ``value`` (items lacking it are dropped);
- ``boost``: multiply the relevance of matching items by ``factor``;
- ``pin``: put a listed item at ``position`` (when it is an eligible candidate).

Example:
    >>> import numpy as np
    >>> from core.settings import RerankSettings
    >>> c = Candidates(["a", "b", "c"], np.array([0.9, 0.8, 0.1], np.float32),
    ...                np.eye(3, dtype=np.float32), [["x"], ["x"], ["y"]])
    >>> rerank(c, 2, RerankSettings(diversity="none", category_cap=1)).order
    [0, 2]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from core.settings import BusinessRule, RerankSettings

F32 = npt.NDArray[np.float32]
_NEG = -1e30


@dataclass
class Candidates:
    """Aligned candidate arrays. ``vectors`` are unit rows [n, d] used for similarity."""

    item_ids: list[str]
    relevance: F32
    vectors: F32
    categories: list[list[str]]
    created_at: npt.NDArray[np.float64] | None = None
    attributes: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.item_ids)


@dataclass
class Reranked:
    order: list[int]
    scores: F32
    rules: dict[int, list[str]] = field(default_factory=dict)


def _matches(rule: BusinessRule, item_id: str, attrs: dict[str, Any]) -> bool:
    if item_id in rule.item_ids:
        return True
    return rule.attribute is not None and rule.attribute in attrs and attrs[rule.attribute] == rule.value


def apply_rules(c: Candidates, rules: list[BusinessRule]) -> tuple[F32, dict[int, list[str]], dict[int, int]]:
    """Returns (adjusted relevance with -inf for dropped items, rules hit per index, pins idx->pos)."""
    rel = c.relevance.astype(np.float32).copy()
    hits: dict[int, list[str]] = {}
    pins: dict[int, int] = {}
    if not rules:
        return rel, hits, pins
    attrs_list = c.attributes or [{} for _ in c.item_ids]
    for i, (iid, attrs) in enumerate(zip(c.item_ids, attrs_list, strict=True)):
        for rule in rules:
            if rule.kind == "filter" and rule.attribute is not None:
                if attrs.get(rule.attribute) != rule.value:
                    rel[i] = _NEG
                    hits.setdefault(i, []).append(rule.name)
                continue
            if not _matches(rule, iid, attrs):
                continue
            hits.setdefault(i, []).append(rule.name)
            if rule.kind == "block":
                rel[i] = _NEG
            elif rule.kind == "boost":
                rel[i] = rel[i] * rule.factor if rel[i] > _NEG else rel[i]
            elif rule.kind == "pin":
                pins[i] = rule.position
    return rel, hits, pins


def freshness(created_at: npt.NDArray[np.float64] | None, now: float, half_life_s: float, n: int) -> F32:
    """2^(-age/half_life) in [0, 1]; zeros when ages are unknown."""
    if created_at is None:
        return np.zeros(n, np.float32)
    age = np.maximum(now - created_at, 0.0)
    return np.exp2(-age / half_life_s).astype(np.float32)


def _normalise(rel: F32) -> F32:
    ok = rel > _NEG / 2
    if not ok.any():
        return rel
    lo, hi = float(rel[ok].min()), float(rel[ok].max())
    out = np.full_like(rel, _NEG)
    out[ok] = (rel[ok] - lo) / (hi - lo) if hi > lo else 1.0
    return out


class _Caps:
    def __init__(self, categories: list[list[str]], cap: int) -> None:
        self.categories, self.cap, self.count = categories, cap, Counter[str]()

    def allowed(self, i: int) -> bool:
        return all(self.count[c] < self.cap for c in self.categories[i])

    def take(self, i: int) -> None:
        self.count.update(self.categories[i])


def select_mmr(rel: F32, vectors: F32, k: int, lam: float, caps: _Caps) -> list[int]:
    """Greedy MMR: argmax lam*rel - (1-lam)*max similarity to what is already chosen.

    Exact, but run over the contenders only when that is provably the same: a step's best gain is at
    least lam * (the next-best relevance) - (1 - lam) * (the largest possible similarity), so items
    whose lam * relevance is below that bound for every step taken can never be picked."""
    alive = np.flatnonzero(rel > _NEG / 2)
    for steps in (k + 8, 4 * k + 32):
        if len(alive) <= 2 * steps:
            break
        sub = _contenders(rel, vectors, alive, steps, lam)
        before = caps.count.copy()
        chosen, taken = _mmr(rel[sub], vectors[sub], sub, k, lam, caps)
        if len(chosen) == k and taken <= steps:
            return chosen
        caps.count = before
    return _mmr(rel[alive], vectors[alive], alive, k, lam, caps)[0]


def _contenders(rel: F32, vectors: F32, alive: npt.NDArray[np.intp], steps: int, lam: float
                ) -> npt.NDArray[np.intp]:
    """Alive items (ascending) that can win one of the first ``steps`` MMR steps."""
    r = rel[alive].astype(np.float64)
    kth = float(np.partition(r, len(r) - steps)[len(r) - steps])  # the steps-th largest relevance
    rows = vectors if len(alive) == len(vectors) else vectors[alive]  # (alive is ascending: all = every row)
    s_max = float(np.einsum("ij,ij->i", rows, rows).max())  # max |v|^2 >= any v.w
    bound = lam * kth - (1.0 - lam) * max(s_max, 0.0) - 1e-4  # margin: float32 gains
    return alive[lam * r >= bound]


def _mmr(rel: F32, vectors: F32, index: npt.NDArray[np.intp], k: int, lam: float,
         caps: _Caps) -> tuple[list[int], int]:
    """MMR over the rows given (``index`` maps them to the caller's); returns the picks (caller's
    indices) and the number of steps taken (picks and cap refusals).

    The gains are computed again only after a pick (the only step that moves ``max_sim``): a cap
    refusal just removes its row, so most steps are one argmax (the same gains, the same picks)."""
    max_sim = np.zeros(len(rel), np.float32)
    alive = np.ones(len(rel), bool)
    base = lam * rel
    gain = np.where(alive, base - (1.0 - lam) * max_sim, _NEG)
    chosen: list[int] = []
    steps = 0
    while len(chosen) < k and steps < len(rel):
        pick = int(gain.argmax())
        alive[pick] = False
        gain[pick] = _NEG
        steps += 1
        item = int(index[pick])
        if not caps.allowed(item):
            continue
        chosen.append(item)
        caps.take(item)
        if lam < 1.0:
            np.maximum(max_sim, vectors @ vectors[pick], out=max_sim)
            gain = np.where(alive, base - (1.0 - lam) * max_sim, _NEG)
    return chosen, steps


def select_dpp(rel: F32, vectors: F32, k: int, lam: float, caps: _Caps, smooth: float = 0.1) -> list[int]:
    """Greedy MAP of a DPP (Chen et al. 2018) with L = diag(q) ((1-s) V V^T + s I) diag(q),
    q = exp(alpha * rel). ``lam`` in [0, 1) is the relevance/diversity trade-off,
    alpha = lam / (2 (1 - lam)); ``smooth`` keeps L full rank when vectors are low-rank (categories)."""
    alive = rel > _NEG / 2
    idx = np.flatnonzero(alive)
    if len(idx) == 0:
        return []
    alpha = lam / (2.0 * max(1.0 - lam, 1e-3))
    q = np.exp(alpha * (rel[idx] - rel[idx].max())).astype(np.float64)
    vec = vectors[idx].astype(np.float64)
    d2 = q * q * ((1.0 - smooth) * (vec * vec).sum(1) + smooth) + 1e-12
    cis = np.zeros((k, len(idx)))
    chosen: list[int] = []
    free = np.ones(len(idx), bool)
    while len(chosen) < k:
        cand = [int(j) for j in np.flatnonzero(free & (d2 > 1e-12)) if caps.allowed(int(idx[j]))]
        if not cand:
            break
        j = cand[int(np.argmax(d2[cand]))]
        m = len(chosen)
        col = q * q[j] * (1.0 - smooth) * (vec @ vec[j])
        col[j] += smooth * q[j] * q[j]
        e = (col - cis[:m].T @ cis[:m, j]) / np.sqrt(d2[j])
        cis[m] = e
        d2 = d2 - e * e
        free[j] = False
        chosen.append(int(idx[j]))
        caps.take(int(idx[j]))
    return chosen


def _fill(chosen: list[int], rel: F32, k: int) -> list[int]:
    """When caps or DPP stop early, top up with the best remaining eligible items."""
    if len(chosen) >= k:
        return chosen
    taken = set(chosen)
    rest = [int(i) for i in np.argsort(-rel) if rel[i] > _NEG / 2 and int(i) not in taken]
    return chosen + rest[: k - len(chosen)]


def _apply_pins(order: list[int], pins: dict[int, int], k: int) -> list[int]:
    rest = [i for i in order if i not in pins]
    for i, pos in sorted(pins.items(), key=lambda p: p[1]):
        rest.insert(min(pos, len(rest)), i)
    return rest[:k]


def rerank(c: Candidates, k: int, cfg: RerankSettings, now: float = 0.0) -> Reranked:
    """Rules, then freshness, then diversity under caps, then pins. Returns indices into ``c``."""
    rel, hits, pins = apply_rules(c, cfg.rules)
    pins = {i: p for i, p in pins.items() if rel[i] > _NEG / 2}
    rel = _normalise(rel)
    fresh = freshness(c.created_at, now, cfg.freshness_half_life_s, len(c))
    rel = np.where(rel > _NEG / 2, rel + cfg.freshness_boost * fresh, rel).astype(np.float32)
    caps = _Caps(c.categories, cfg.category_cap)
    k_free = max(k - len(pins), 0)
    pool = rel.copy()
    pool[list(pins)] = _NEG
    if cfg.diversity == "mmr":
        chosen = select_mmr(pool, c.vectors, k_free, cfg.diversity_lambda, caps)
    elif cfg.diversity == "dpp":
        chosen = select_dpp(pool, c.vectors, k_free, cfg.diversity_lambda, caps)
    else:
        chosen = select_mmr(pool, c.vectors, k_free, 1.0, caps)
    order = _apply_pins(_fill(chosen, pool, k_free), pins, k)
    return Reranked(order, rel, {i: hits[i] for i in order if i in hits})


def intra_list_similarity(vectors: F32) -> float:
    """Mean pairwise cosine similarity of a list (lower = more diverse)."""
    n = len(vectors)
    if n < 2:
        return 0.0
    sims = vectors @ vectors.T
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))
