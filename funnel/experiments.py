"""Experiments in the funnel: which arm a user is in, and the feed that arm serves.

Assignment is two salted hashes of the user id (blake2b, so it is the same in every process and after
every restart): one per layer picks the experiment whose slice holds the user, one per experiment
picks the arm by its share. It costs a hash per running experiment, no I/O.

An arm is served by a :meth:`Pipeline.variant` of the process's pipeline: the same state, reader and
clock with the arm's overrides applied to a copy of the settings (head weights, diversity,
exploration), its candidate sources, and its model version (a slot that asks a ``ModelResolver`` for
the pinned ranker; while that one is loading, the active model serves and the feed says so in
``model_version``). Users in an ``interleave`` experiment get one feed that team-draft-interleaves
both arms' feeds; each item records the arm that placed it (``FeedItem.team``). Every feed records
the experiments and arms of its user (``Feed.experiments``).

Example:
    >>> 0.0 <= bucket("layer:default", "u1") < 1.0
    True
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from core.events import Feed
from core.experiment_config import Arm, Experiment
from core.settings import ConfigError, Settings
from funnel.modelset import ModelSet, ModelSlot
from funnel.retrieval import SOURCES
from models.interleaving import team_draft

if TYPE_CHECKING:
    from funnel.pipeline import FeedResult, Pipeline

log = logging.getLogger(__name__)
INTERLEAVED = "interleaved"  # the arm label of a user in an interleave experiment
_RERANK_KEYS = ("diversity", "diversity_lambda", "explore_slots", "explore_policy")


def bucket(salt: str, user_id: str) -> float:
    """A uniform number in [0, 1) from the salt and the user id, identical in every process."""
    digest = hashlib.blake2b(f"{salt}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def arm_of(experiment: Experiment, user_id: str) -> Arm | None:
    """The user's arm in ``experiment``, or None when the user is outside its slice of the layer."""
    pos = bucket(f"layer:{experiment.layer}", user_id)
    if not experiment.offset <= pos < experiment.offset + experiment.traffic:
        return None
    if experiment.kind == "interleave":
        return experiment.arms[0]
    u, edge = bucket(f"arm:{experiment.arm_salt}", user_id), 0.0
    for arm in experiment.arms:
        edge += arm.share
        if u < edge:
            return arm
    return experiment.arms[-1]


def assign(experiments: Sequence[Experiment], user_id: str, now: float) -> list[tuple[Experiment, Arm]]:
    """The running experiments the user is in, with their arm (at most one per layer)."""
    out: list[tuple[Experiment, Arm]] = []
    for exp in experiments:
        if exp.active(now):
            arm = arm_of(exp, user_id)
            if arm is not None:
                out.append((exp, arm))
    return out


def arm_settings(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """A copy of ``settings`` with an arm's setting overrides (model version and sources aside)."""
    rerank = {k: overrides[k] for k in _RERANK_KEYS if k in overrides}
    update: dict[str, Any] = {"rerank": settings.rerank.model_copy(update=rerank)}
    if "head_weights" in overrides:
        update["ranking"] = settings.ranking.model_copy(update={"head_weights": overrides["head_weights"]})
    return settings.model_copy(update=update)


class ModelResolver(Protocol):
    """Gives the models to serve for a pinned ranker version (None while it is not loaded)."""

    def resolve(self, version: str, current: ModelSet) -> ModelSet | None: ...

    def want(self, versions: set[str]) -> None: ...


class PinnedSlot(ModelSlot):
    """The process's model slot with the ranker pinned to ``version`` when the resolver has it."""

    def __init__(self, base: ModelSlot, version: str, resolver: ModelResolver) -> None:
        super().__init__(base.current)
        self.base, self.version, self.resolver = base, version, resolver

    @property
    def current(self) -> ModelSet:
        now = self.base.current
        if now.model_version == self.version:
            return now
        return self.resolver.resolve(self.version, now) or now


def check_sources(experiments: Sequence[Experiment]) -> None:
    """ConfigError naming each arm whose ``sources`` this funnel does not have."""
    bad = [(f"experiments.{k}.arms.{j}.overrides.sources", sorted(set(arm.overrides.sources) - set(SOURCES)))
           for k, exp in enumerate(experiments) for j, arm in enumerate(exp.arms)
           if arm.overrides.sources and set(arm.overrides.sources) - set(SOURCES)]
    if bad:
        lines = "\n".join(f"  {key}: unknown candidate sources {names} (known: {list(SOURCES)})"
                          for key, names in bad)
        raise ConfigError([key for key, _ in bad], f"invalid experiments:\n{lines}")


class Experiments:
    """The experiments a process serves; :meth:`swap` replaces them at once (reload)."""

    def __init__(self, experiments: Sequence[Experiment] = (), resolver: ModelResolver | None = None) -> None:
        self.resolver = resolver
        self.watcher: Any = None  # the serving wiring's reloader, for status()
        self._lock = threading.Lock()
        self._experiments: tuple[Experiment, ...] = ()
        self._variants: dict[tuple[Any, ...], Pipeline] = {}
        self.swap(experiments)

    @property
    def experiments(self) -> tuple[Experiment, ...]:
        return self._experiments

    def swap(self, experiments: Sequence[Experiment]) -> None:
        """Serve ``experiments`` from now on; ConfigError (and nothing changes) when one is unusable."""
        check_sources(experiments)
        with self._lock:
            self._experiments, self._variants = tuple(experiments), {}
        if self.resolver is not None:
            self.resolver.want({v for e in experiments for a in e.arms if (v := a.overrides.model_version)})

    def assign(self, user_id: str, now: float) -> list[tuple[Experiment, Arm]]:
        return assign(self._experiments, user_id, now)

    def status(self) -> dict[str, Any]:
        """What is serving: the experiments, the reloader's state and the pinned models."""
        out: dict[str, Any] = {"experiments": [e.model_dump() for e in self._experiments]}
        for name, part in (("reload", self.watcher), ("pinned_models", self.resolver)):
            if part is not None and hasattr(part, "status"):
                out[name] = part.status()
        return out

    def feed(self, pipeline: Pipeline, user_id: str, n: int, context: dict[str, str] | None, trigger: str,
             trigger_event_ts: float | None, salt: int, now: float) -> FeedResult | None:
        """The feed of the user's arms, or None when the user is in no running experiment (or the
        experiment machinery failed: the user then gets the default feed, and it is logged)."""
        try:
            return self._feed(pipeline, user_id, n, context, trigger, trigger_event_ts, salt, now)
        except Exception:
            log.exception("experiments failed for %s; serving the default feed", user_id)
            return None

    def _feed(self, pipeline: Pipeline, user_id: str, n: int, context: dict[str, str] | None, trigger: str,
              trigger_event_ts: float | None, salt: int, now: float) -> FeedResult | None:
        chosen = self.assign(user_id, now)
        if not chosen:
            return None
        labels = {e.name: (INTERLEAVED if e.kind == "interleave" else a.name) for e, a in chosen}
        ab = [(e, a) for e, a in chosen if e.kind == "ab"]
        inter = next((e for e, _ in chosen if e.kind == "interleave"), None)
        args = (user_id, n, context, trigger, trigger_event_ts, salt, now)
        if inter is None:
            result = self._variant(pipeline, ab, None).feed(*args)
        else:
            first, second = (self._variant(pipeline, ab, arm).feed(*args) for arm in inter.arms)
            result = _interleave(first, second, inter, n, salt)
        feed = result.feed.model_copy(update={"experiments": labels})
        return replace(result, feed=feed)

    def _variant(self, pipeline: Pipeline, ab: list[tuple[Experiment, Arm]], extra: Arm | None) -> Pipeline:
        key = (id(pipeline), *((e.name, a.name) for e, a in ab), extra.name if extra else None)
        hit = self._variants.get(key)
        if hit is not None:
            return hit
        overrides: dict[str, Any] = {}
        for _, arm in ab:
            overrides.update(arm.overrides.changed())
        if extra is not None:
            overrides.update(extra.overrides.changed())
        version = overrides.get("model_version")
        models = PinnedSlot(pipeline.models, version, self.resolver) if version and self.resolver else None
        settings = arm_settings(pipeline.settings, overrides)
        variant = pipeline.variant(settings, models, overrides.get("sources"))
        with self._lock:
            self._variants.setdefault(key, variant)
        return variant


def _interleave(first: FeedResult, second: FeedResult, exp: Experiment, n: int, salt: int) -> FeedResult:
    """Team-draft merge of the two arms' feeds; the coin flips are seeded by the feeds' user, time and
    the request salt, so a replay gives the same feed."""
    a, b = first.feed, second.feed
    seed = int(bucket(f"interleave:{exp.name}:{salt}:{a.version}", a.user_id) * 2**63)
    own = ({it.item_id: it for it in a.items}, {it.item_id: it for it in b.items})
    order, teams = team_draft([it.item_id for it in a.items], [it.item_id for it in b.items], n,
                              np.random.default_rng(seed))
    names = (exp.arms[0].name, exp.arms[1].name)
    items = [own[t][iid].model_copy(update={"rank": k, "team": names[t]})
             for k, (iid, t) in enumerate(zip(order, teams, strict=True))]
    same = a.model_version == b.model_version
    version = a.model_version if same else f"{a.model_version}+{b.model_version}"
    feed = Feed(feed_id=a.feed_id, user_id=a.user_id, version=a.version, generated_at=a.generated_at,
                model_version=version, index_version=a.index_version, items=items,
                degraded=a.degraded or b.degraded, trigger=a.trigger, trigger_event_ts=a.trigger_event_ts)
    stages = {k: first.stages_ms.get(k, 0.0) + second.stages_ms.get(k, 0.0)
              for k in {*first.stages_ms, *second.stages_ms}}
    return replace(first, feed=feed, stages_ms=stages, candidates=max(first.candidates, second.candidates),
                   explore={})  # an interleaved feed is not evaluable off-policy: no distribution
