"""Experiments in the funnel: stable salted-hash assignment, arm overrides applied per request, the
feed recording its arms, interleaving, pinned model versions, and feeds whose head does not depend on n."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from funnel_events import NOW, catalog, crowd, memory_state

from core.experiment_config import Experiment
from core.settings import ConfigError, Settings
from funnel.experiments import Experiments, arm_of, assign, bucket
from funnel.modelset import ModelSet, ModelSlot
from funnel.pipeline import Pipeline

ITEMS = [f"i{j:02d}" for j in range(60)]
USERS = [f"user-{k}" for k in range(4000)]


def _exp(name: str = "exp", layer: str = "default", kind: str = "ab", traffic: float = 1.0,
         offset: float = 0.0, arms: list[dict[str, Any]] | None = None) -> Experiment:
    arms = arms or [{"name": "control", "share": 0.5}, {"name": "treatment", "share": 0.5}]
    return Experiment.model_validate({"name": name, "layer": layer, "kind": kind, "start": NOW - 3600,
                                      "end": NOW + 3600, "traffic": traffic, "offset": offset, "arms": arms})


def _pipeline(settings: Settings | None = None) -> Pipeline:
    settings = settings or Settings(publisher={"feed_size": 20}, rerank={"explore_slots": 2})
    cats = {i: [f"c{j % 5}"] for j, i in enumerate(ITEMS)}
    events = crowd({i: 60 - j for j, i in enumerate(ITEMS)}, device="phone")
    return Pipeline(settings, memory_state(settings, catalog(cats), events), clock=lambda: NOW)


def _assignment_script(user_ids: list[str]) -> str:
    config = json.dumps(_exp().model_dump_json())
    return ("import json, sys\nfrom funnel.experiments import arm_of\nfrom core.experiment_config import "
            f"Experiment\nexp = Experiment.model_validate(json.loads({config}))\n"
            f"print(json.dumps([arm_of(exp, u).name for u in {user_ids!r}]))\n")


def test_assignment_is_the_same_in_another_process_and_hash_seed():
    users = USERS[:500]
    here = [arm_of(_exp(), u).name for u in users]  # type: ignore[union-attr]
    out = subprocess.run([sys.executable, "-c", _assignment_script(users)], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}, cwd=".")
    assert json.loads(out.stdout) == here
    assert 0.4 < here.count("treatment") / len(here) < 0.6


def test_shares_slices_and_layers():
    exp = _exp(arms=[{"name": "a", "share": 0.2}, {"name": "b", "share": 0.8}], traffic=0.5)
    arms = [arm_of(exp, u) for u in USERS]
    inside = [a.name for a in arms if a is not None]
    assert abs(len(inside) / len(USERS) - 0.5) < 0.03
    assert abs(inside.count("a") / len(inside) - 0.2) < 0.03
    # two experiments of one layer never share a user; another layer is independent of the first
    first, second = _exp("x", traffic=0.5), _exp("y", offset=0.5, traffic=0.5)
    other = _exp("z", layer="other")
    for user in USERS[:1000]:
        chosen = assign([first, second, other], user, NOW)
        assert len([e for e, _ in chosen if e.layer == "default"]) == 1
        assert any(e.name == "z" for e, _ in chosen)
    treated_x = {u for u in USERS if (a := arm_of(first, u)) is not None and a.name == "treatment"}
    treated_z = {u for u in USERS if arm_of(other, u).name == "treatment"}  # type: ignore[union-attr]
    overlap = len(treated_x & treated_z) / len(treated_x)
    assert 0.4 < overlap < 0.6  # independent hashes: half of x's treated users are z's treated users
    assert not assign([first.model_copy(update={"start": NOW + 1})], USERS[0], NOW)  # not started yet
    assert bucket("a", "u") != bucket("b", "u")


def test_arm_overrides_apply_per_request_and_the_feed_records_the_arm():
    p = _pipeline()
    arms = [{"name": "control", "share": 0.5},
            {"name": "lean", "share": 0.5, "overrides": {"explore_slots": 0, "sources": ["fresh"],
                                                        "diversity": "none"}}]
    p.experiments = Experiments([_exp(arms=arms)])
    seen = {}
    for user in USERS[:40]:
        feed = p.feed(user, n=20).feed
        arm = feed.experiments["exp"]
        seen[arm] = feed
        if arm == "lean":
            assert not any(it.explore for it in feed.items)
            assert {it.source for it in feed.items} == {"fresh"}
        else:
            assert sum(it.explore for it in feed.items) == 2
    assert set(seen) == {"control", "lean"}
    assert p.feed("outside", n=5, now=NOW + 7200).feed.experiments == {}  # the experiment has ended


def test_interleaving_mixes_both_arms_and_records_the_team():
    p = _pipeline(Settings(publisher={"feed_size": 20}, rerank={"explore_slots": 0}))
    arms = [{"name": "popular", "overrides": {"sources": ["popular"]}},
            {"name": "fresh", "overrides": {"sources": ["fresh"]}}]
    p.experiments = Experiments([_exp("mix", kind="interleave", arms=arms)])
    feed = p.feed("someone", n=10).feed
    assert feed.experiments == {"mix": "interleaved"}
    assert [it.rank for it in feed.items] == list(range(10))
    teams = [it.team for it in feed.items]
    assert teams.count("popular") == 5 and teams.count("fresh") == 5
    assert all(it.source == it.team for it in feed.items)


class _Ranker:
    feature_names = ("popular_score",)

    def __init__(self, version: str, sign: float) -> None:
        self.version, self.sign = version, sign

    def score_arrays(self, dense: np.ndarray) -> dict[str, np.ndarray]:
        return {"click": (self.sign * np.nan_to_num(dense[:, 0])).astype(np.float32)}


class _Resolver:
    def __init__(self) -> None:
        self.wanted: set[str] = set()
        self.loaded = {"7": _Ranker("7", -1.0)}

    def resolve(self, version: str, current: ModelSet) -> ModelSet | None:
        ranker = self.loaded.get(version)
        return None if ranker is None else replace(current, ranker=ranker)  # type: ignore[arg-type]

    def want(self, versions: set[str]) -> None:
        self.wanted = versions


def test_a_pinned_model_version_serves_beside_the_active_one():
    p = _pipeline(Settings(publisher={"feed_size": 20}, rerank={"explore_slots": 0, "diversity": "none"}))
    p.models = ModelSlot(ModelSet(ranker=_Ranker("9", 1.0)))  # type: ignore[arg-type]
    resolver = _Resolver()
    arms = [{"name": "active"}, {"name": "old", "overrides": {"model_version": "7"}},
            {"name": "missing", "overrides": {"model_version": "3"}}]
    arms = [{**a, "share": s} for a, s in zip(arms, (0.4, 0.3, 0.3), strict=True)]
    p.experiments = Experiments([_exp(arms=arms)], resolver)
    assert resolver.wanted == {"7", "3"}
    versions = {}
    for user in USERS[:60]:
        feed = p.feed(user, n=10).feed
        versions.setdefault(feed.experiments["exp"], set()).add(feed.model_version)
        if feed.experiments["exp"] == "old":  # the pinned ranker reverses the popularity order
            assert feed.items[0].item_id == "i59"
    assert versions == {"active": {"9"}, "old": {"7"}, "missing": {"9"}}  # not loaded: the feed says so


def test_unknown_sources_are_refused_and_the_last_config_keeps_serving():
    p = _pipeline()
    router = Experiments([_exp()])
    p.experiments = router
    bad = _exp(arms=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5,
                                                    "overrides": {"sources": ["popular", "telepathy"]}}])
    with pytest.raises(ConfigError) as err:
        router.swap([bad])
    assert err.value.keys == ["experiments.0.arms.1.overrides.sources"] and "telepathy" in str(err.value)
    assert router.experiments[0].arms[1].name == "treatment"
    assert p.feed(USERS[0], n=5).feed.experiments == {"exp": arm_of(_exp(), USERS[0]).name}  # type: ignore[union-attr]


def test_the_head_of_a_feed_does_not_depend_on_n():
    """Re-ranking and exploration run over a whole feed (feed_size) before the cut: a short feed is
    the prefix of the long one, exploration picks and their propensities included."""
    p = _pipeline()
    full = p.feed("reader", n=20, salt=3).feed.items
    for n in (1, 4, 7, 12, 19):
        short = p.feed("reader", n=n, salt=3).feed.items
        head = [(it.item_id, it.propensity) for it in full[:n]]
        assert [(it.item_id, it.propensity) for it in short] == head
    assert any(it.explore for it in full[:12])


def test_a_feed_result_carries_the_exploration_distribution_its_picks_came_from():
    p = _pipeline()
    result = p.feed("reader", n=20, salt=5)
    picks = {it.rank: it for it in result.feed.items if it.explore}
    assert sorted(result.explore) == sorted(picks) and len(picks) == 2
    for pos, dist in result.explore.items():
        assert abs(sum(dist.values()) - 1.0) < 1e-9 and len(dist) > 2
        assert dist[picks[pos].item_id] == pytest.approx(picks[pos].propensity)
        assert not set(dist) & {it.item_id for it in result.feed.items if not it.explore}
    assert sorted(p.feed("reader", n=10, salt=5).explore) == [k for k in sorted(picks) if k < 10]
