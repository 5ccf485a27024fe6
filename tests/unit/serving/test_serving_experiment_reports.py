"""Experiment reports from the event log of a simulated run served by the funnel: per-arm metrics,
the sample-ratio check, interleaving, and the same report from the CLI and the read-only API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from core.experiment_config import Experiment
from funnel.experiments import Experiments, arm_of
from services.api.app import create_app
from services.cli.main import app as cli
from services.experiments.analysis import alpha_levels, analyse, logged
from services.experiments.simulation import SimConfig, Simulation, sim_settings
from services.experiments.source import LogRecords, read_log, write_log

ARMS = [{"name": "control", "share": 0.5}, {"name": "lean", "share": 0.5, "overrides": {"explore_slots": 0}}]


def _exp(sim: Simulation, name: str = "exp", kind: str = "ab",
         arms: list[dict[str, Any]] = ARMS) -> Experiment:
    return Experiment.model_validate({"name": name, "kind": kind, "start": sim.now - 10, "end": sim.now + 1e6,
                                      "arms": arms})


@pytest.fixture(scope="module")
def run() -> tuple[Simulation, Experiment]:
    sim = Simulation(SimConfig(users=400, items=150, seed=7, warm_events=3000), sim_settings(10))
    exp = _exp(sim)
    sim.pipeline.experiments = Experiments([exp])
    sim.run(600)
    return sim, exp


def test_per_arm_metrics_come_from_the_log_and_match_the_assignment(run: tuple[Simulation, Experiment]):
    sim, exp = run
    report = analyse(logged(sim.log), exp, looks=10)
    served = {r["user_id"] for r in sim.log.impressions}
    assert sum(a["users"] for a in report["arms"].values()) == len(served)
    by_arm: dict[str, list[str]] = {}
    for user in served:
        by_arm.setdefault(arm_of(exp, user).name, []).append(user)  # type: ignore[union-attr]
    assert {a: len(u) for a, u in by_arm.items()} == {a: r["users"] for a, r in report["arms"].items()}
    clicks = {(r["feed_id"], r["position"]) for r in sim.log.interactions
              if r["type"] == "click" and r["feed_id"]}
    for arm, stats in report["arms"].items():
        feeds = [r for r in sim.log.impressions if r["experiments"]["exp"] == arm]
        shown = sum(len(r["items"]) for r in feeds)
        clicked = sum((r["feed_id"], p) in clicks for r in feeds for p in r["positions"])
        assert stats["impressions"] == shown
        assert stats["metrics"]["ctr"]["value"] == pytest.approx(clicked / shown)
        assert 0 < stats["metrics"]["coverage"]["value"] <= 1 and stats["metrics"]["diversity"]["value"] > 0
    assert not report["sample_ratio"]["mismatch"] and report["users_in_several_arms"] == 0
    assert len(report["timeline"]) == 10
    cmp = report["comparisons"]["lean"]
    assert set(cmp) == {"ctr", "deep_rate", "diversity", "latency_ms", "coverage"}
    assert cmp["ctr"]["confidence_sequence"][0] <= cmp["ctr"]["diff"] <= cmp["ctr"]["confidence_sequence"][1]


def test_the_report_spends_half_its_alpha_on_ctr_and_shares_the_rest(run: tuple[Simulation, Experiment]):
    """Family-wise 5%: CTR (the primary metric) at 2.5% per treatment arm, the four other metrics at
    0.625% each; each comparison is declared exactly when its always-valid p is below its own level."""
    one, two = alpha_levels(0.05, 1), alpha_levels(0.05, 2)
    assert one["ctr"] == pytest.approx(0.025) and sum(one.values()) == pytest.approx(0.05)
    assert set(one) == {"ctr", "deep_rate", "diversity", "latency_ms", "coverage"}
    assert all(v == pytest.approx(0.00625) for m, v in one.items() if m != "ctr")
    assert all(two[m] == pytest.approx(one[m] / 2) for m in one)
    sim, exp = run
    report = analyse(logged(sim.log), exp, looks=10, alpha=0.5)  # a loose alpha: some metric declares
    assert report["alpha_primary"] == pytest.approx(0.25)
    assert report["alpha_per_test"] == pytest.approx(0.0625)
    cmp = report["comparisons"]["lean"]
    for metric, c in cmp.items():
        assert (c["declared"] is not None) == (c["p_always_valid"] < report["alpha_levels"][metric]), metric
    assert any(c["declared"] for c in cmp.values())


def test_a_broken_split_is_flagged_by_the_sample_ratio_check(run: tuple[Simulation, Experiment]):
    sim, exp = run
    lean_users = sorted({r["user_id"] for r in sim.log.impressions if r["experiments"]["exp"] == "lean"})
    dropped = set(lean_users[: len(lean_users) // 2])  # half the lean users' impressions never logged
    kept = LogRecords([r for r in sim.log.impressions if r["user_id"] not in dropped], sim.log.interactions,
                      sim.log.items, sim.log.users)
    report = analyse(logged(kept), exp, looks=5)
    assert report["sample_ratio"]["mismatch"] and report["sample_ratio"]["p_value"] < 0.001
    assert report["decisions"][0].startswith("sample-ratio mismatch")


def test_interleaving_report_credits_clicks_to_the_arm_that_placed_the_item():
    sim = Simulation(SimConfig(users=80, items=150, seed=8, warm_events=3000), sim_settings(10))
    arms = [{"name": "popular", "overrides": {"sources": ["popular"]}},
            {"name": "fresh", "overrides": {"sources": ["fresh"]}}]
    exp = _exp(sim, "mix", "interleave", arms)
    sim.pipeline.experiments = Experiments([exp])
    sim.run(300)
    report = analyse(logged(sim.log), exp, looks=5)
    teams = {(r["feed_id"], p): t for r in sim.log.impressions for p, t in zip(r["positions"], r["teams"],
                                                                                strict=True)}
    clicks = [teams[(r["feed_id"], r["position"])] for r in sim.log.interactions if r["type"] == "click"
              and r["feed_id"]]
    assert report["credited_clicks"] == {"popular": clicks.count("popular"), "fresh": clicks.count("fresh")}
    pref = report["preference"]
    assert pref["users"] == pref["prefer_a"] + pref["prefer_b"] + pref["ties"] > 0
    assert len(report["timeline"]) == 5


def _config(tmp_path: Path, exp: Experiment) -> Path:
    text = (f'[[experiments]]\nname = "{exp.name}"\nstart = {exp.start}\nend = {exp.end}\n'
            'arms = [{ name = "control", share = 0.5 }, '
            '{ name = "lean", share = 0.5, overrides = { explore_slots = 0 } }]\n')
    path = tmp_path / "streamrec.toml"
    path.write_text(text)
    return path


def test_the_cli_writes_the_report_as_json_and_html(run: tuple[Simulation, Experiment], tmp_path: Path):
    sim, exp = run
    log = tmp_path / "log.jsonl"
    write_log(sim.log, log)
    assert len(read_log(str(log), sim.settings).impressions) == len(sim.log.impressions)
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    config = str(_config(tmp_path, exp))
    res = CliRunner().invoke(cli, ["experiments", "report", "exp", "--source", str(log), "--json", str(out),
                                   "--html", str(page), "--looks", "8", "--config", config])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["arms"] == analyse(logged(sim.log), exp, looks=8)["arms"]
    assert page.read_text().count("<svg") == 3 and "Sample ratio" in page.read_text()
    listed = CliRunner().invoke(cli, ["experiments", "list", "--config", str(_config(tmp_path, exp))])
    assert json.loads(listed.output)[0]["name"] == "exp"
    missing = CliRunner().invoke(cli, ["experiments", "report", "nope", "--source", str(log),
                                       "--config", str(_config(tmp_path, exp))])
    assert missing.exit_code == 2 and "no experiment 'nope'" in missing.output


def test_the_api_serves_the_same_report_read_only(run: tuple[Simulation, Experiment], tmp_path: Path):
    sim, exp = run
    log = tmp_path / "log.jsonl"
    write_log(sim.log, log)
    app = create_app(sim.settings, sim.pipeline)
    app.state.experiment_source = str(log)
    client = TestClient(app)
    listed = client.get("/v1/experiments").json()
    assert [e["name"] for e in listed["experiments"]] == ["exp"]
    body = client.get("/v1/experiments/exp/report", params={"looks": 8}).json()
    assert body["arms"] == analyse(logged(sim.log), exp, looks=8)["arms"]
    page = client.get("/v1/experiments/exp/report.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<svg" in page.text
    assert client.get("/v1/experiments/nope/report").status_code == 404
    assert client.post("/v1/experiments/exp/report").status_code == 405  # read-only
