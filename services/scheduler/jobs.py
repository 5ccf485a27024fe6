"""The four lifecycle jobs over one set of stores, shared by the scheduler process and the CLI.

A job never runs twice at once in a process (a second request is skipped and logged); a promoted
two-tower triggers an index rebuild; drift above a threshold triggers training (trigger ``drift``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.settings import Settings
from feature_store.archive import ParquetArchive
from funnel.training import TrainConfig
from services.artifacts import VersionedArtifactStore, open_store
from services.drift import DriftContext, DriftOutcome, run_drift
from services.indexer import IndexOutcome, run_index
from services.metadata import MetadataStore
from services.trainer.data import Catalogue, load_catalogue, load_events
from services.trainer.job import TrainOutcome, run_training
from services.trainer.two_tower import (
    TwoTowerBundle,
    content_config,
    encode_content,
    load_bundle,
    user_sequences,
)

log = logging.getLogger(__name__)
JOB_NAMES = ("train", "train_check", "index", "drift", "publish_active")
EventCount = Callable[[], int | None]


class Lifecycle:
    """Holds the stores; ``run(name, trigger)`` runs one job by name."""

    def __init__(self, settings: Settings, meta: MetadataStore | None = None,
                 store: VersionedArtifactStore | None = None, archive: ParquetArchive | None = None,
                 cfg: TrainConfig | None = None, clock: Callable[[], float] = time.time,
                 events: EventCount | None = None) -> None:
        self.settings = settings
        self.meta = meta or MetadataStore(settings.database_url)
        self.store = store or open_store(settings.artifacts_url)
        self.archive = archive or ParquetArchive.from_settings(settings)
        self.cfg = cfg or TrainConfig.from_settings(settings)
        self.events = events  # interactions the worker has applied so far (None: unknown)
        self.clock = clock
        self._locks = {name: threading.Lock() for name in JOB_NAMES}

    @contextlib.contextmanager
    def _exclusive(self, name: str) -> Iterator[bool]:
        lock = self._locks[name]
        got = lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                lock.release()

    def run(self, name: str, trigger: str = "schedule") -> Any:
        jobs: dict[str, Callable[[str], Any]] = {"train": self.train, "train_check": self.train_if_due,
                                                  "index": self.index,
                                                  "drift": self.drift, "publish_active": self.publish_active}
        if name not in jobs:
            raise KeyError(f"unknown job {name!r}; known: {', '.join(JOB_NAMES)}")
        return jobs[name](trigger)

    def train_if_due(self, trigger: str = "events") -> TrainOutcome | None:
        """Train when ``trainer.min_new_events`` interactions arrived since the last training run: the
        platform learns from what it ingests without anyone running a command."""
        seen = self.events() if self.events is not None else None
        if seen is None:
            return None
        last = self.meta.jobs("train", 1)
        before = int(last[0].details.get("events_seen", 0)) if last else 0
        if seen - before < self.settings.trainer.min_new_events:
            return None
        log.info("%d new interactions since the last training: training", seen - before)
        return self.train(trigger, events_seen=seen)

    def train(self, trigger: str = "schedule", events_seen: int | None = None) -> TrainOutcome | None:
        with self._exclusive("train") as got:
            if not got:
                log.warning("train requested (%s) while a training run is in progress: skipped", trigger)
                return None
            if events_seen is None and self.events is not None:
                events_seen = self.events()
            out = run_training(self.settings, self.meta, self.store, self.archive, trigger, self.clock(),
                               self.cfg, {"events_seen": events_seen or 0})
        decision = out.decision("two_tower")
        if decision is not None and decision.promoted:
            self.index(f"promoted two_tower {decision.version}")
        return out

    def index(self, trigger: str = "schedule") -> IndexOutcome | None:
        with self._exclusive("index") as got:
            if not got:
                log.warning("index requested (%s) while a build is in progress: skipped", trigger)
                return None
            return run_index(self.settings, self.meta, self.store, self.archive, trigger[:64], self.clock())

    def drift(self, trigger: str = "schedule") -> DriftOutcome | None:
        with self._exclusive("drift") as got:
            if not got:
                return None
            return run_drift(self.settings, self.meta, self.archive, self.drift_context(), self._on_drift,
                             self.clock(), trigger)

    def _on_drift(self, reasons: list[str]) -> int | None:
        log.warning("retraining because of drift: %s", "; ".join(reasons))
        out = self.train("drift")
        return out.run_id if out is not None else None

    def drift_context(self) -> DriftContext:
        """Categories from the catalogue; scorer/embedder from the active two-tower (if loadable)."""
        now = self.clock()
        catalogue = load_catalogue(self.archive, now)
        ctx = DriftContext(categories=catalogue.primary_category())
        active = self.meta.active_model("two_tower")
        version = self.store.active_version("two_tower")
        if active is None or version is None:
            return ctx
        try:
            with tempfile.TemporaryDirectory(prefix="drift-model-") as tmp:
                bundle = load_bundle(self.store.fetch("two_tower", version, Path(tmp)))
        except Exception as exc:
            log.error("drift: active two_tower %s unreadable, model checks skipped: %s", version, exc)
            return ctx
        histories = user_sequences(load_events(self.archive, active.data_start, active.data_end))
        ctx.scorer = _scorer(bundle, histories)
        ctx.embedder = _content_embedder(catalogue, content_config(bundle))
        return ctx

    def interrupt_running(self, since: float, reason: str) -> int:
        """Mark this process's still-running job runs as failed (called on a forced shutdown)."""
        return self.meta.fail_running(since, reason)

    def publish_active(self, trigger: str = "schedule") -> int:
        from services.scheduler.publish import publish_active_users

        with self.meta.job("publish_active", trigger) as run:
            run.details["users"] = n = publish_active_users(self.settings, self.archive, self.clock())
        return n


def _content_embedder(catalogue: Catalogue, content_cfg: dict[str, Any]
                      ) -> Callable[[Sequence[str]], npt.NDArray[np.float32]]:
    """Content vectors (text + categories) of catalogue items: where engagement sits in content space."""
    vectors = encode_content(catalogue, content_cfg)
    row = {iid: j for j, iid in enumerate(catalogue.item_ids)}
    return lambda items: vectors[[row[i] for i in items if i in row]]


def _scorer(bundle: TwoTowerBundle, histories: dict[str, list[str]]
            ) -> Callable[[Sequence[str], Sequence[str]], npt.NDArray[np.float32]]:
    """Score (user, item) with the user as the model knew them at training time."""

    def score(users: Sequence[str], items: Sequence[str]) -> npt.NDArray[np.float32]:
        uniq = sorted(set(users))
        row = {u: j for j, u in enumerate(uniq)}
        uvec = bundle.user_vectors([histories.get(u, []) for u in uniq])
        known = np.array([i in bundle.codes for i in items], bool)
        ivec = np.zeros((len(items), bundle.dim), np.float32)
        ivec[known] = bundle.item_vectors([i for i in items if i in bundle.codes])
        return np.einsum("nd,nd->n", uvec[[row[u] for u in users]], ivec).astype(np.float32)

    return score


def interactions_applied(settings: Settings) -> EventCount:
    """The worker's durable count of applied interactions (its stats hash in Redis); None while Redis
    is unreachable or unset."""
    import redis

    from feature_store.online.keys import Keys

    if not settings.redis.url:
        return lambda: None
    client = redis.Redis.from_url(settings.redis.url, socket_timeout=settings.redis.socket_timeout_s,
                                  socket_connect_timeout=settings.redis.connect_timeout_s)
    key = Keys(settings.redis.key_prefix).stats

    def count() -> int | None:
        try:
            raw = client.hget(key, "interactions:processed")
        except redis.RedisError as exc:
            log.warning("cannot read the interaction count: %s", exc)
            return None
        return int(raw) if raw is not None else 0

    return count
