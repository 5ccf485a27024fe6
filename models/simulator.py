"""A seeded synthetic world: the traffic source for the demo, benchmarks and closed-loop tests.

Users have hidden tastes over categories (a Dirichlet mix) plus a latent vector; items have one or
two categories, a title and text drawn from their categories' words (so a text encoder has signal),
a latent vector near their category centroid, a hidden quality, and a ``created_at``. The ground
truth click probability is

    sigmoid(base_logit + taste_weight * log(n_categories * taste[u, cat(i)])
            + latent_weight * <u, v_i> + quality_i)

Organic traffic exposes items by (user taste x Zipf popularity); shown feeds (:meth:`World.respond`)
get position-biased examination. Everything is pure numpy and reproducible from ``seed``.

Example:
    >>> w = World(WorldConfig(n_users=20, n_items=50, seed=1))
    >>> events = list(w.traffic(100, start_ts=1.7e9, rate_per_s=50))
    >>> len(events), len({e.event_id for e in events})
    (100, 100)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.events import Interaction, InteractionType, ItemUpsert, UserUpsert

F64 = npt.NDArray[np.float64]

_WORDS = {
    "sports": "football match goal league coach stadium tennis runner score team",
    "tech": "software chip laptop startup cloud robot code gadget network data",
    "music": "album guitar concert singer band melody jazz festival song vinyl",
    "food": "recipe pasta kitchen chef bakery spicy dinner vegan dessert coffee",
    "travel": "beach flight hotel island mountain passport journey resort city trail",
    "science": "physics galaxy molecule research climate fossil quantum planet lab cell",
    "fashion": "dress sneakers runway designer jacket style denim boutique silk trend",
    "gaming": "console quest player arcade esports level dungeon controller boss pixel",
    "movies": "film actor director premiere trailer cinema sequel drama comedy oscar",
    "health": "fitness yoga sleep nutrition doctor workout vitamin therapy calm cardio",
    "finance": "stocks budget market invest bank crypto savings loan tax fund",
    "home": "garden sofa decor lamp kitchenette plants rug paint shelf cozy",
}
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {c: tuple(w.split()) for c, w in _WORDS.items()}
FILLERS = ("the", "new", "best", "daily", "ultimate", "guide", "story", "notes", "weekly", "inside")
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_P = (0.6, 0.3, 0.1)
IMPRESSION = InteractionType.IMPRESSION


@dataclass(frozen=True)
class WorldConfig:
    """World size and behaviour. ``new_item_rate``: new items per simulated second in ``stream``."""

    n_users: int = 200
    n_items: int = 500
    n_categories: int = 8
    dim: int = 16
    seed: int = 0
    new_item_rate: float = 0.0
    taste_concentration: float = 0.3
    base_logit: float = -3.0
    taste_weight: float = 1.0
    latent_weight: float = 2.0
    quality_std: float = 0.5
    zipf_exponent: float = 0.8
    explore_fraction: float = 0.2
    like_given_click: float = 0.25
    skip_given_no_click: float = 0.3
    max_item_age_s: float = 14 * 86400.0
    epoch: float = 1_700_000_000.0
    id_prefix: str = ""
    categories: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if min(self.n_users, self.n_items, self.n_categories, self.dim) < 1:
            raise ValueError("n_users, n_items, n_categories and dim must be >= 1")


def _sigmoid(x: F64) -> F64:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def _unit(x: F64) -> F64:
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12), dtype=np.float64)


def _category_names(cfg: WorldConfig) -> list[str]:
    if cfg.categories:
        return list(cfg.categories)[: cfg.n_categories]
    base = list(CATEGORY_WORDS)
    return [base[c] if c < len(base) else f"topic{c}" for c in range(cfg.n_categories)]


def _words(category: str) -> tuple[str, ...]:
    return CATEGORY_WORDS.get(category, tuple(f"{category}w{j}" for j in range(10)))


class World:
    """The hidden truth plus generators of events. See the module docstring."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = cfg = config or WorldConfig()
        self.categories = _category_names(cfg)
        root = np.random.SeedSequence(cfg.seed)
        rngs = [np.random.default_rng(s) for s in root.spawn(4)]
        self._rng_build, self._rng_traffic, self._rng_respond, self._rng_items = rngs
        self._prefix = cfg.id_prefix or f"s{cfg.seed}-"
        self._counter = 0
        self._centroids = _unit(self._rng_build.standard_normal((cfg.n_categories, cfg.dim)))
        self._build_users(cfg.n_users)
        self._item_ids: list[str] = []
        self._item_index: dict[str, int] = {}
        self._item_cat = np.zeros((0, 2), dtype=np.int64)
        self._item_vec = np.zeros((0, cfg.dim))
        self._item_quality = np.zeros(0)
        self._item_created = np.zeros(0)
        self._item_text: list[tuple[str, str]] = []
        ages = self._rng_build.uniform(0.0, cfg.max_item_age_s, cfg.n_items)
        self._append_items(cfg.epoch - ages, self._rng_build)

    # ---- construction -------------------------------------------------------------------
    def _build_users(self, n: int) -> None:
        cfg, rng = self.config, self._rng_build
        self.user_ids = [f"u{j:05d}" for j in range(n)]
        self._user_index = {u: j for j, u in enumerate(self.user_ids)}
        self._taste = rng.dirichlet(np.full(cfg.n_categories, cfg.taste_concentration), n)
        noise = 0.5 * rng.standard_normal((n, cfg.dim))
        self._user_vec = _unit(self._taste @ self._centroids + noise)
        self._user_device = rng.choice(len(DEVICES), size=n, p=DEVICE_P)

    def _append_items(self, created: F64, rng: np.random.Generator) -> list[str]:
        cfg, k = self.config, len(created)
        start = len(self._item_ids)
        primary = rng.integers(0, cfg.n_categories, k)
        second = np.where(rng.random(k) < 0.3, rng.integers(0, cfg.n_categories, k), primary)
        vec = _unit(self._centroids[primary] + 0.6 * rng.standard_normal((k, cfg.dim)))
        ids = [f"i{start + j:06d}" for j in range(k)]
        self._item_ids.extend(ids)
        self._item_index.update({iid: start + j for j, iid in enumerate(ids)})
        self._item_cat = np.vstack([self._item_cat, np.stack([primary, second], axis=1)])
        self._item_vec = np.vstack([self._item_vec, vec])
        self._item_quality = np.concatenate([self._item_quality, cfg.quality_std * rng.standard_normal(k)])
        self._item_created = np.concatenate([self._item_created, created])
        self._item_text.extend(self._make_text(int(primary[j]), int(second[j]), rng) for j in range(k))
        self._refresh_exposure()
        return ids

    def _make_text(self, primary: int, second: int, rng: np.random.Generator) -> tuple[str, str]:
        main, other = _words(self.categories[primary]), _words(self.categories[second])
        title_words = [str(rng.choice(FILLERS)), *(str(w) for w in rng.choice(main, 2, replace=False))]
        title = " ".join(title_words).capitalize()
        body = [str(w) for w in rng.choice(main, 6)] + [str(w) for w in rng.choice(other, 2)]
        return title, f"{title}. " + " ".join(body)

    def _refresh_exposure(self) -> None:
        """Per-category item lists with Zipf weights by hidden quality rank (the organic popularity)."""
        cfg = self.config
        self._by_cat: list[npt.NDArray[np.int64]] = []
        self._by_cat_cdf: list[F64] = []
        for c in range(cfg.n_categories):
            idx = np.flatnonzero(self._item_cat[:, 0] == c)
            idx = idx[np.argsort(-self._item_quality[idx], kind="stable")]
            w = np.asarray(1.0 / np.arange(1, len(idx) + 1) ** cfg.zipf_exponent, dtype=np.float64)
            self._by_cat.append(idx)
            self._by_cat_cdf.append(np.cumsum(w) / max(float(w.sum()), 1e-12))

    @property
    def event_id_prefix(self) -> str:
        """Every event id this world emits starts with this (``config.id_prefix`` or ``s<seed>-``)."""
        return self._prefix

    # ---- catalogue ----------------------------------------------------------------------
    @property
    def item_ids(self) -> list[str]:
        return list(self._item_ids)

    def has_item(self, item_id: str) -> bool:
        return item_id in self._item_index

    def item_categories(self, item_id: str) -> list[str]:
        p, s = self._item_cat[self._item_index[item_id]]
        return [self.categories[int(p)]] if p == s else [self.categories[int(p)], self.categories[int(s)]]

    def _item_upsert(self, j: int, now: float) -> ItemUpsert:
        title, text = self._item_text[j]
        iid = self._item_ids[j]
        return ItemUpsert(item_id=iid, title=title, text=text, categories=self.item_categories(iid),
                          attributes={"quality_bucket": int(np.clip(self._item_quality[j] * 2 + 2, 0, 4))},
                          created_at=float(min(self._item_created[j], now)), timestamp=now)

    def item_upserts(self, now: float | None = None) -> list[ItemUpsert]:
        """The whole current catalogue (``now`` defaults to ``config.epoch``)."""
        ts = self.config.epoch if now is None else now
        return [self._item_upsert(j, ts) for j in range(len(self._item_ids))]

    def user_upserts(self, now: float | None = None) -> list[UserUpsert]:
        ts = self.config.epoch if now is None else now
        return [UserUpsert(user_id=u, attributes={"device": DEVICES[int(self._user_device[j])]},
                           segment=DEVICES[int(self._user_device[j])], timestamp=ts)
                for j, u in enumerate(self.user_ids)]

    def add_items(self, k: int, now: float) -> list[ItemUpsert]:
        """``k`` brand-new items created at ``now`` (cold start: no history yet)."""
        ids = self._append_items(np.full(k, float(now)), self._rng_items)
        return [self._item_upsert(self._item_index[i], now) for i in ids]

    # ---- ground truth -------------------------------------------------------------------
    def _probs(self, u: int, items: npt.NDArray[np.int64]) -> F64:
        cfg = self.config
        cats = self._item_cat[items]
        taste = 0.7 * self._taste[u, cats[:, 0]] + 0.3 * self._taste[u, cats[:, 1]]
        taste_term = np.clip(np.log(cfg.n_categories * np.maximum(taste, 1e-9)), -3.0, 2.0)
        affinity = self._item_vec[items] @ self._user_vec[u]
        logit = (cfg.base_logit + cfg.taste_weight * taste_term + cfg.latent_weight * affinity
                 + self._item_quality[items])
        return _sigmoid(logit)

    def click_prob(self, user_id: str, item_id: str) -> float:
        """The hidden probability that ``user_id`` clicks ``item_id`` when examining it."""
        items = np.array([self._item_index[item_id]])
        return float(self._probs(self._user_index[user_id], items)[0])

    def click_probs(self, user_id: str, item_ids: list[str]) -> F64:
        items = np.array([self._item_index[i] for i in item_ids], dtype=np.int64)
        return self._probs(self._user_index[user_id], items)

    def true_top_items(self, user_id: str, k: int) -> list[str]:
        probs = self._probs(self._user_index[user_id], np.arange(len(self._item_ids)))
        top = np.argsort(-probs, kind="stable")[:k]
        return [self._item_ids[int(j)] for j in top]

    def taste(self, user_id: str) -> dict[str, float]:
        row = self._taste[self._user_index[user_id]]
        return {c: float(row[j]) for j, c in enumerate(self.categories)}

    def shift_preferences(self, strength: float, seed: int = 0) -> None:
        """Drift: blend every user's taste and latent vector toward fresh random ones (0 = no-op)."""
        cfg = self.config
        s = float(np.clip(strength, 0.0, 1.0))
        rng = np.random.default_rng([cfg.seed, seed, 7919])
        fresh = rng.dirichlet(np.full(cfg.n_categories, cfg.taste_concentration), len(self.user_ids))
        self._taste = (1.0 - s) * self._taste + s * fresh
        target = _unit(fresh @ self._centroids + 0.5 * rng.standard_normal(self._user_vec.shape))
        self._user_vec = _unit((1.0 - s) * self._user_vec + s * target)

    # ---- events -------------------------------------------------------------------------
    def _next_id(self) -> str:
        self._counter += 1
        return f"{self._prefix}{self._counter}"

    def _device(self, u: int, rng: np.random.Generator) -> str:
        own = int(self._user_device[u])
        return DEVICES[own] if rng.random() < 0.9 else DEVICES[int(rng.integers(len(DEVICES)))]

    def _pick_item(self, u: int, rng: np.random.Generator) -> int:
        cfg = self.config
        if rng.random() < cfg.explore_fraction:
            c = int(rng.integers(cfg.n_categories))
        else:
            c = int(rng.choice(cfg.n_categories, p=self._taste[u]))
        while len(self._by_cat[c]) == 0:
            c = (c + 1) % cfg.n_categories
        pos = int(np.searchsorted(self._by_cat_cdf[c], rng.random()))
        return int(self._by_cat[c][min(pos, len(self._by_cat[c]) - 1)])

    def _event(self, u: int, j: int, kind: InteractionType, ts: float, device: str, value: float = 1.0,
               **attribution: object) -> Interaction:
        return Interaction(event_id=self._next_id(), user_id=self.user_ids[u], item_id=self._item_ids[j],
                           type=kind, value=value, timestamp=ts, context={"device": device},
                           **attribution)  # type: ignore[arg-type]

    def _view(self, u: int, j: int, p_click: float,
              rng: np.random.Generator) -> list[tuple[InteractionType, float]]:
        """The action sequence for one examined impression: impression [+ click [+ like] + dwell | skip]."""
        cfg = self.config
        acts: list[tuple[InteractionType, float]] = [(InteractionType.IMPRESSION, 1.0)]
        if rng.random() < p_click:
            acts.append((InteractionType.CLICK, 1.0))
            if rng.random() < cfg.like_given_click:
                acts.append((InteractionType.LIKE, 1.0))
            acts.append((InteractionType.DWELL, round(float(rng.exponential(10.0 + 60.0 * p_click)), 2)))
        elif rng.random() < cfg.skip_given_no_click:
            acts.append((InteractionType.SKIP, 1.0))
        return acts

    def traffic(self, n_events: int, start_ts: float, rate_per_s: float) -> Iterator[Interaction]:
        """``n_events`` organic interactions, timestamps spaced ``1 / rate_per_s`` from ``start_ts``."""
        for ev in self.stream(n_events, start_ts, rate_per_s, with_new_items=False):
            assert isinstance(ev, Interaction)
            yield ev

    def stream(self, n_events: int, start_ts: float, rate_per_s: float,
               with_new_items: bool = True) -> Iterator[Interaction | ItemUpsert]:
        """Organic traffic interleaved with new items at ``config.new_item_rate`` per simulated second.

        New items are not counted in ``n_events``; they enter the exposure pool right away.
        """
        rng, step = self._rng_traffic, 1.0 / max(rate_per_s, 1e-9)
        n, next_item_ts = 0, start_ts
        while n < n_events:
            ts = start_ts + n * step
            while with_new_items and self.config.new_item_rate > 0 and next_item_ts <= ts:
                next_item_ts += float(rng.exponential(1.0 / self.config.new_item_rate))
                yield from self.add_items(1, ts)
            u = int(rng.integers(len(self.user_ids)))
            j, device = self._pick_item(u, rng), self._device(u, rng)
            p = float(self._probs(u, np.array([j]))[0])
            for kind, value in self._view(u, j, p, rng):
                if n >= n_events:
                    return
                yield self._event(u, j, kind, start_ts + n * step, device, value)
                n += 1

    def organic(self, user_id: str, now: float) -> list[Interaction]:
        """One organic view by ``user_id`` at ``now``: an item picked by taste x popularity, as in
        :meth:`stream`, and the whole action sequence (impression [+ click [+ like] + dwell | skip])."""
        rng, u = self._rng_traffic, self._user_index[user_id]
        j, device = self._pick_item(u, rng), self._device(u, rng)
        p = float(self._probs(u, np.array([j]))[0])
        return [self._event(u, j, kind, now, device, value) for kind, value in self._view(u, j, p, rng)]

    def respond(self, user_id: str, item_ids: list[str], now: float, feed_id: str | None = None,
                propensities: list[float] | None = None) -> list[Interaction]:
        """The user's reaction to a shown feed: an impression per slot plus clicks (and likes, dwell)
        drawn from the truth with examination probability ``1 / log2(position + 2)``."""
        rng, u = self._rng_respond, self._user_index[user_id]
        device = DEVICES[int(self._user_device[u])]
        probs = self.click_probs(user_id, item_ids)
        out: list[Interaction] = []
        for pos, iid in enumerate(item_ids):
            j = self._item_index[iid]
            attribution = {"feed_id": feed_id, "position": pos,
                           "propensity": None if propensities is None else float(propensities[pos])}
            examined = rng.random() < 1.0 / np.log2(pos + 2)
            acts = self._view(u, j, float(probs[pos]), rng) if examined else [(IMPRESSION, 1.0)]
            out.extend(self._event(u, j, kind, now, device, value, **attribution) for kind, value in acts)
        return out
