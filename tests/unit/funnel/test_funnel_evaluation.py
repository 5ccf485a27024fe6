"""``streamrec eval`` through the one path: the training job, then the served feed at each test user's
time over a point-in-time replay; baselines on the same interactions; seeds; the JSON keys."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.evaluation import run_once
from funnel.train_two_tower import TwoTowerOptions
from funnel.training import TrainConfig
from models.data import Interactions, global_time_split, leave_one_out

SETTINGS = Settings(worker={"content_model": False})
TINY = TrainConfig(two_tower=TwoTowerOptions(dim=16, max_len=6, epochs=3, batch_size=32), min_groups=5)


def _walks(n_users: int = 40, n_items: int = 30, length: int = 12) -> Interactions:
    """Each user walks the catalogue in order from a random start: the next item is predictable."""
    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    for u in range(n_users):
        start = int(rng.integers(0, n_items))
        for t in range(length):
            users.append(f"u{u}")
            items.append(f"i{(start + t) % n_items}")
            ts.append(1_700_000_000.0 + u * 37 + t * 60)
    log = Interactions.from_arrays(users, items, ts)
    log.attach_items({f"i{n}": (f"item {n}", [f"c{n % 3}"]) for n in range(n_items)})
    return log


def test_one_run_serves_and_scores_through_the_funnel():
    data = _walks()
    split = leave_one_out(data)
    out = run_once(data, split, None, SETTINGS, TINY, lambda: MemoryOnline(SETTINGS), seed=0)
    assert set(out.baselines) == {"pop", "itemknn", "covisit"}
    for m in [out.metrics, *out.baselines.values()]:
        assert {"ndcg@10", "hr@10", "recall@50", "mrr", "coverage@10", "novelty@10"} <= set(m)
        assert 0.0 <= m["ndcg@10"] <= m["hr@10"] <= m["recall@50"] <= 1.0
    assert out.metrics["users"] == 40 and len(out.ndcg) == 40
    assert {"seq", "covisit", "popular", "ranker", "heuristic"} <= set(out.ablations)
    assert out.training["ranker"] and out.training["groups"] > 0
    # the walk is sequential: the funnel (its learned sequential relation, its ranker) must find it
    assert out.baselines["covisit"]["hr@10"] > out.baselines["pop"]["hr@10"]
    assert out.metrics["ndcg@10"] > 1.5 * out.baselines["pop"]["ndcg@10"]


def test_same_seed_same_figures():
    data = _walks(n_users=20)
    split = leave_one_out(data)
    a, b = (run_once(data, split, None, SETTINGS, TINY, lambda: MemoryOnline(SETTINGS), seed=3) for _ in "ab")
    np.testing.assert_array_equal(a.ndcg, b.ndcg)
    assert a.metrics == b.metrics


def test_cli_writes_the_documented_keys(tmp_path: Path, monkeypatch):
    import funnel.eval_runs as eval_runs
    from services.cli.evaluate import app

    data = _walks(n_users=20)
    csv = tmp_path / "e.csv"
    rows = [f"{data.user_ids[u]},{data.item_ids[i]},{t}" for u, i, t in
            zip(data.users, data.items, data.timestamps, strict=True)]
    csv.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    config = tmp_path / "streamrec.toml"
    config.write_text("[worker]\ncontent_model = false\n")
    real = eval_runs.run_once
    monkeypatch.setattr(eval_runs, "run_once", lambda *a, **k: real(*a[:4], replace(TINY, seed=a[4].seed),
                                                                     *a[5:], **k))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["--data", str(csv), "--format", "csv", "--seeds", "2", "--config",
                                   str(config), "--json", str(out), "--jobs", "1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert {"metrics", "metrics_se", "baselines", "baselines_se", "global_split", "ablations",
            "seconds_per_seed", "lead"} <= set(doc)
    assert set(doc["baselines"]) == set(doc["baselines_se"]) == {"pop", "itemknn", "covisit"}
    assert {"metrics", "baselines"} <= set(doc["global_split"]) and doc["seeds"] == [0, 1]
    assert len(doc["seconds_per_seed"]) == 2 and doc["metrics_se"]["ndcg@10"] >= 0.0


def test_runs_in_processes_give_the_figures_of_runs_in_process():
    """Two spawned run processes (each on one torch thread) score every run as one process does."""
    import torch

    from funnel.eval_runs import Seeds

    data = _walks(n_users=20)
    docs = []
    for jobs in (1, 2):
        seeds = Seeds(data, None, SETTINGS, TINY, partial(MemoryOnline, SETTINGS))
        for s in (0, 1):
            seeds.add(s, leave_one_out(data), global_time_split(data))
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            seeds.run(jobs)
        finally:
            torch.set_num_threads(before)
        docs.append(seeds)
    one, two = docs
    for a, b in zip(one.runs + one.global_runs, two.runs + two.global_runs, strict=True):
        np.testing.assert_array_equal(a.ndcg, b.ndcg)
        assert a.baselines == b.baselines
    names = {"0/leave_one_out", "0/global", "1/leave_one_out", "1/global"}
    assert set(two.document()["run_seconds"]) == names


def test_served_relations_know_the_transitions_the_ranker_was_labelled_with():
    """The ranker learns from relations fitted without its label events (stacking); the relations it
    serves with are refitted on every positive, so a transition seen only among label events is known."""
    from funnel.evaluation import catalog
    from funnel.log import EventLog
    from funnel.training import train

    data = _walks()
    end = float(data.timestamps.max())
    # a user whose three positives (all label points: last_n = 3) are the only i0 -> i15 transition
    users = [data.user_ids[u] for u in data.users] + ["z"] * 3
    items = [data.item_ids[i] for i in data.items] + ["i0", "i15", "i8"]
    ts = np.r_[data.timestamps, end + 60, end + 120, end + 180]
    log = EventLog.from_ratings(users, items, ts, np.ones(len(ts)), None, prefix="ev")
    served = {}
    for refit in (False, True):
        cfg = replace(TINY, refit_neighbours=refit)
        trained = train(log, catalog(data, None), SETTINGS, cfg, lambda: MemoryOnline(SETTINGS))
        assert trained.neighbours is not None and trained.ranker is not None
        served[refit] = [i for i, _ in trained.neighbours.score("seq", ["i0"], 50)]
    assert "i15" not in served[False]
    assert "i15" in served[True]


def test_cli_scores_the_validation_holdout(tmp_path: Path, monkeypatch):
    from services.cli.evaluate import DataFormat, Holdout, SplitName, run

    data = _walks(n_users=20)
    monkeypatch.setattr("funnel.eval_runs.load_data", lambda *a: data)
    doc = run(SETTINGS, tmp_path, DataFormat.csv, None, SplitName.leave_one_out, [0], False, 1,
              Holdout.validation)
    assert doc["holdout"] == "validation" and doc["users"] == 20
    # the machine is recorded: seeded figures repeat on one machine, not across CPUs' instruction sets
    import torch

    assert doc["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert doc["machine"]["cores"] == os.cpu_count()
    assert 0.0 <= doc["metrics"]["ndcg@10"] <= 1.0
