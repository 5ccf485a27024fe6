"""Off-policy estimates from the platform's log (a simulated run served by the funnel, replayed) and from
an Open Bandit Pipeline CSV, against known truths; and ``streamrec ope`` on both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.experiment_config import ArmOverrides
from services.cli.bench_ope import truth
from services.cli.main import app as cli
from services.experiments.obp import ObpPolicy, evaluate_obp
from services.experiments.ope import Candidate, gather, report
from services.experiments.simulation import SimConfig, Simulation, sim_settings
from services.experiments.source import write_log

CANDIDATES = [Candidate("no_exploration", ArmOverrides(explore_slots=0)),
              Candidate("lambda_04", ArmOverrides(diversity_lambda=0.4))]


@pytest.fixture(scope="module")
def run() -> Simulation:
    sim = Simulation(SimConfig(users=150, items=200, seed=11, warm_events=4000), sim_settings(10))
    sim.run(500)
    return sim


def test_dr_estimates_from_the_replayed_log_land_on_the_truth(run: Simulation):
    g = gather(run.log, run.settings, CANDIDATES)
    rep = report(g, CANDIDATES)
    assert rep["log"]["feeds"] == 500 and rep["log"]["replay_fidelity"] == 1.0  # the replay re-serves the log
    theta = rep["reward_model"]["theta"]
    assert theta[0] == 1.0 and all(b <= a for a, b in zip(theta, theta[1:], strict=False))
    for c in CANDIDATES:
        est = rep["policies"][c.name]["estimates"]
        dr, true = est["position_based"]["dr"], truth(run, g, c.name)
        assert abs(dr["value"] - true) < 4 * dr["se"] + 0.002, (c.name, dr, true)
        assert 0.5 < est["support"] <= 1.05 and dr["ess"] > 0
        assert set(est["per_slot"]) == {"ips", "snips", "dr", "dr_uncapped"}
        assert 0 <= est["capped_share"] < 0.01


def test_streamrec_ope_on_a_log_file(run: Simulation, tmp_path: Path):
    log, policy, out = tmp_path / "log.jsonl", tmp_path / "policy.toml", tmp_path / "ope.json"
    write_log(run.log, log)
    policy.write_text('[[policies]]\nname = "no_explore"\noverrides = { explore_slots = 0 }\n'
                      '[[policies]]\nname = "bad"\noverrides = { sources = ["popular"] }\n')
    res = CliRunner().invoke(cli, ["ope", "--policy", str(policy), "--log", str(log), "--json", str(out),
                                   "--limit", "200"])
    assert res.exit_code == 0, res.output
    body = json.loads(out.read_text())
    assert body["log"]["feeds"] == 200 and set(body["policies"]) == {"no_explore", "bad"}
    assert "DR" in res.output
    policy.write_text('name = "x"\n[overrides]\ndiversity_lamda = 0.3\n')
    bad = CliRunner().invoke(cli, ["ope", "--policy", str(policy), "--log", str(log)])
    assert bad.exit_code == 2 and "diversity_lamda" in bad.output


def _obp_log(path: Path, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An OBP-layout CSV: 12 items, 3 positions, a categorical user feature and user-item affinities;
    the logging policy prefers low item ids; clicks = theta(position) * relevance(user, item)."""
    rng = np.random.default_rng(seed)
    n_items, theta = 12, np.array([1.0, 0.6, 0.35])
    group = rng.integers(0, 3, rows)
    aff = rng.gamma(1.0, 1.0, (rows, n_items))
    liked = np.arange(n_items)[None, :] % 3 == group[:, None]
    rel = 1.0 / (1.0 + np.exp(-(-2.5 + 0.4 * aff + 0.3 * liked)))
    logging = np.exp(-0.15 * np.arange(n_items))
    logging /= logging.sum()
    item = rng.choice(n_items, rows, p=logging)
    pos = rng.integers(0, 3, rows)
    click = rng.random(rows) < theta[pos] * rel[np.arange(rows), item]
    df = pd.DataFrame({"timestamp": np.arange(rows), "item_id": item, "position": pos + 1,
                       "click": click.astype(int),
                       "propensity_score": logging[item], "user_feature_0": [f"g{g}" for g in group],
                       **{f"user-item_affinity_{j}": aff[:, j] for j in range(n_items)}})
    df.to_csv(path)
    return theta[pos] * rel.mean(axis=1), theta[pos] * rel[np.arange(rows), aff.argmax(axis=1)]


def test_open_bandit_csv_estimates_match_the_truth(tmp_path: Path):
    path = tmp_path / "obp.csv"
    uniform_truth, affinity_truth = _obp_log(path, 30_000, 0)
    rep = evaluate_obp(path, {"uniform": ObpPolicy(kind="uniform"), "affinity": ObpPolicy(kind="affinity")})
    assert rep["log"]["positions"] == 3 and rep["log"]["items"] == 12
    for name, true in (("uniform", uniform_truth.mean()), ("affinity", affinity_truth.mean())):
        est = rep["policies"][name]["estimates"]["per_slot"]
        for kind in ("ips", "snips", "dr"):
            assert abs(est[kind]["value"] - true) < 4 * est[kind]["se"], (name, kind, est[kind], true)
        assert est["dr"]["se"] < est["ips"]["se"]
    assert abs(rep["reward_model"]["theta"][1] - 0.6) < 0.08


def test_streamrec_ope_reads_an_open_bandit_csv_and_refuses_a_bad_one(tmp_path: Path):
    path, policy, out = tmp_path / "obp.csv", tmp_path / "p.toml", tmp_path / "o.json"
    _obp_log(path, 3000, 1)
    policy.write_text('name = "uniform"\n[obp]\nkind = "uniform"\n')
    res = CliRunner().invoke(cli, ["ope", "--policy", str(policy), "--log", str(path), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["policies"]["uniform"]["estimates"]["per_slot"]["dr"]["value"] > 0
    pd.read_csv(path, index_col=0).drop(columns=["propensity_score"]).to_csv(path)
    bad = CliRunner().invoke(cli, ["ope", "--policy", str(policy), "--log", str(path)])
    assert bad.exit_code == 2 and "missing columns" in bad.output
