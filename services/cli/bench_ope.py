"""``streamrec bench ope``: doubly robust off-policy estimates against the simulator's truth.

    flock /work/notes/cpu.lock streamrec bench ope --seeds 20 --json bench_ope.json

Per seed: a simulated world is served by the funnel's default policy (heuristic ranker, MMR at
lambda 0.7, two Thompson exploration slots) for ``--feeds`` requests in a closed loop (responses go
back into the online state); the log (impression records and interactions, nothing else) is then
evaluated by ``streamrec ope``'s code for each candidate policy. The truth of a candidate is its
expected CTR on the logged contexts: at each logged feed's moment the replay runs the candidate, and
its feed (its exploration distribution included) is scored by the simulator's hidden click model and
examination curve; no sampling. Reported per candidate: the truth, the DR estimate and its 95%
interval per seed, how many seeds the interval covers, how many estimates fall within 10% of the
truth, and IPS / SNIPS / uncapped DR / per-slot DR / the reward model alone beside them. ``dr`` is
the SWITCH DR of ``services.experiments.ope`` (logged slots weighted above 20 left to the reward
model; ``capped_share`` says how many).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

from core.experiment_config import ArmOverrides
from services.experiments.ope import Candidate, Gathered, gather, report
from services.experiments.simulation import SimConfig, Simulation, examination, sim_settings

app = typer.Typer(help="Off-policy evaluation against the simulator's truth.")
CANDIDATES = (
    Candidate("another_ranker", ArmOverrides(head_weights={"click": 1.0, "prior": 1.0})),
    Candidate("another_lambda", ArmOverrides(diversity_lambda=0.4)),
    Candidate("no_exploration", ArmOverrides(explore_slots=0)),
)


def truth(sim: Simulation, g: Gathered, name: str) -> float:
    """The candidate's expected clicks per slot over the logged contexts (exact expectation)."""
    clicks = slots = 0.0
    for r in g.rounds[name]:
        theta = examination(len(r.target))
        items = sorted({i for d in r.target for i in d})
        p = dict(zip(items, sim.world.click_probs(r.user, items).tolist(), strict=True))
        clicks += sum(theta[k] * prob * p[i] for k, d in enumerate(r.target) for i, prob in d.items())
        slots += len(r.target)
    return clicks / slots


def run_seed(seed: int, feeds: int, users: int, items: int) -> dict[str, Any]:
    settings = sim_settings(10)
    sim = Simulation(SimConfig(users=users, items=items, seed=seed, warm_events=15_000), settings)
    t0 = time.perf_counter()
    sim.run(feeds)
    t1 = time.perf_counter()
    g = gather(sim.log, settings, CANDIDATES)
    rep = report(g, CANDIDATES)
    out = {"seed": seed, "run_s": t1 - t0, "evaluate_s": time.perf_counter() - t1,
           "logging_ctr": rep["log"]["logging_ctr"], "replay_fidelity": rep["log"]["replay_fidelity"],
           "theta": rep["reward_model"]["theta"], "policies": {}}
    for c in CANDIDATES:
        est = rep["policies"][c.name]["estimates"]
        out["policies"][c.name] = {"truth": truth(sim, g, c.name), "estimates": est}
    return out


ESTIMATORS = {"ips": ("position_based", "ips"), "snips": ("position_based", "snips"),
              "dr": ("position_based", "dr"), "dr_uncapped": ("position_based", "dr_uncapped"),
              "per_slot_dr": ("per_slot", "dr")}


def _mean_rel(rows: list[dict[str, Any]], family: str, name: str) -> float:
    return float(np.mean([r["estimates"][family][name]["value"] / r["truth"] - 1.0 for r in rows]))


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in CANDIDATES:
        rows = [r["policies"][c.name] for r in runs]
        tr = np.array([r["truth"] for r in rows])
        dr = np.array([r["estimates"]["position_based"]["dr"]["value"] for r in rows])
        ci = np.array([r["estimates"]["position_based"]["dr"]["ci"] for r in rows])
        rel = dr / tr - 1.0
        out[c.name] = {
            "overrides": c.overrides.changed(), "truth_mean": float(tr.mean()), "dr_mean": float(dr.mean()),
            "dr_rel_error": rel.round(4).tolist(), "within_10pct": int(np.sum(np.abs(rel) <= 0.10)),
            "ci_covers": int(np.sum((ci[:, 0] <= tr) & (tr <= ci[:, 1]))),
            "max_abs_rel_error": float(np.abs(rel).max()),
            "mean_rel_error": {k: _mean_rel(rows, *fam) for k, fam in ESTIMATORS.items()},
            "direct_method_mean_rel_error": float(np.mean([r["estimates"]["direct_method"] / r["truth"] - 1
                                                           for r in rows])),
            "support_mean": float(np.mean([r["estimates"]["support"] for r in rows])),
            "capped_share_mean": float(np.mean([r["estimates"]["capped_share"] for r in rows]))}
    return out


def _accuracy(run: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, v in run["policies"].items():
        dr = v["estimates"]["position_based"]["dr"]
        truth_, rel = float(v["truth"]), float(dr["value"] / v["truth"] - 1.0)
        out[name] = {"truth": truth_, "dr": dr["value"], "dr_ci": dr["ci"], "dr_se": dr["se"],
                     "rel_error": rel, "within_10pct": bool(abs(rel) <= 0.1),  # numpy bools are not JSON
                     "ci_covers": bool(dr["ci"][0] <= truth_ <= dr["ci"][1]),
                     "dr_uncapped": v["estimates"]["position_based"]["dr_uncapped"]["value"],
                     "capped_share": v["estimates"]["capped_share"]}
    return out


@app.command("ope")
def bench_ope(seeds: int = typer.Option(20, min=1), feeds: int = typer.Option(1000, min=50),
              users: int = typer.Option(300, min=10), items: int = typer.Option(400, min=50),
              accuracy_feeds: int = typer.Option(6000, min=0, help="one long logged run (0: none)"),
              json_out: Path = typer.Option(Path("bench_ope.json"), "--json")) -> None:
    """DR (and IPS, SNIPS) estimates of three candidate policies vs their true CTR: one long logged
    run (accuracy), and ``--seeds`` shorter ones (interval coverage)."""
    t0 = time.perf_counter()
    long_run = run_seed(1000, accuracy_feeds, users, items) if accuracy_feeds else None
    if long_run is not None:
        typer.echo(f"long run: {_accuracy(long_run)}", err=True)
    runs = []
    for seed in range(seeds):
        runs.append(run_seed(seed, feeds, users, items))
        pol = runs[-1]["policies"]
        typer.echo(f"seed {seed}: " + ", ".join(
            f"{n} truth {v['truth']:.4f} dr {v['estimates']['position_based']['dr']['value']:.4f}"
            for n, v in pol.items()), err=True)
    result = {"seeds": seeds, "feeds_per_seed": feeds, "users": users, "items": items,
              "accuracy_run": None if long_run is None else {"feeds": accuracy_feeds, "seed": 1000,
                                                              "policies": _accuracy(long_run),
                                                              "theta": long_run["theta"],
                                                              "replay_fidelity": long_run["replay_fidelity"]},
              "policies": summarise(runs), "runs": runs, "seconds": time.perf_counter() - t0}
    json_out.write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
