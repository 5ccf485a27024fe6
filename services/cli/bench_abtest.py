"""``streamrec bench abtest``: A/B, A/A and interleaving on the simulator, through the experiment path.

    flock /work/notes/cpu.lock streamrec bench abtest --seeds 20 --power-seeds 5 --json bench_abtest.json

Rankers of known quality: noisy oracles of the simulator's hidden click logit (``NoisyOracle``, its
noise fixed per user and item). The better ranker has noise ``--sigma``; the base ranker's noise is
calibrated so that the better one's true CTR is exactly 10% (or 5%) higher over the world's users
(true CTR: expected clicks per shown slot from the hidden model and the examination curve).

Users are assigned by the experiment config (salted hash, ``funnel.experiments``) and served by the
funnel with their arm's model version (the experiment's resolver), explore slots off, so each user's
feed is fixed; traffic then replays requests (a random user per request) with clicks and likes drawn
from the truth, logged as impression records and interactions, and the report code of ``streamrec
experiments report`` reads them (40 looks, always-valid tests). Reported: the A/B with a 10% better
arm (declared? sign, sample-ratio check, impressions to detection) over ``--seeds`` seeds; an A/A on
the same seeds (false declarations on any metric); and for a 5% better ranker the impressions
interleaving needs to prefer it against those an A/B needs (median over ``--power-seeds``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

from core.events import Feed
from core.experiment_config import Experiment
from funnel.experiments import Experiments
from models.interleaving import team_draft
from services.experiments.analysis import analyse, logged
from services.experiments.simulation import (
    NoisyOracle,
    OracleModels,
    SimConfig,
    Simulation,
    examination,
    sim_settings,
)
from services.experiments.source import LogRecords
from services.pipeline.impressions import impression_of

app = typer.Typer(help="A/B, A/A and interleaving on the simulator.")
K = 10
LOOKS = 40
LIKE_GIVEN_CLICK = 0.25


def _settings() -> Any:
    return sim_settings(K, rerank={"explore_slots": 0, "diversity": "none", "category_cap": 100,
                                   "freshness_boost": 0.0})


def true_ctr(sim: Simulation, oracle: NoisyOracle) -> float:
    """Expected clicks per slot of the oracle's top-K feed, over every user (no item is seen yet)."""
    theta, total = examination(K), 0.0
    for user in sim.world.user_ids:
        top = np.argsort(-oracle.scores(user), kind="stable")[:K]
        total += float(np.sum(theta * sim.world.click_probs(user, [oracle.ids[j] for j in top])))
    return total / (K * len(sim.world.user_ids))


def calibrate(sim: Simulation, better: NoisyOracle, lift: float, seed: int) -> NoisyOracle:
    """The base ranker: the noise whose true CTR is ``better``'s / (1 + lift) (bisection)."""
    target = true_ctr(sim, better) / (1.0 + lift)
    lo, hi = better.sigma, better.sigma + 20.0
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if true_ctr(sim, NoisyOracle(sim.world, mid, seed, "x")) > target else (lo, mid)
    return NoisyOracle(sim.world, 0.5 * (lo + hi), seed, f"base{lift:g}")


def experiment(name: str, kind: str, control: str, treatment: str, start: float) -> Experiment:
    arms = [{"name": "control", "share": 0.5, "overrides": {"model_version": control}},
            {"name": "treatment", "share": 0.5, "overrides": {"model_version": treatment}}]
    return Experiment.model_validate({"name": name, "kind": kind, "start": start - 1, "end": start + 1e7,
                                      "arms": arms})


def arm_feeds(sim: Simulation, exp: Experiment, oracles: dict[str, NoisyOracle]) -> dict[str, Feed]:
    """Each user's feed as the funnel serves it under ``exp`` (A/B: the user's arm)."""
    sim.pipeline.experiments = Experiments([exp], OracleModels(oracles))
    try:
        return {u: sim.serve(u).feed for u in sim.world.user_ids}
    finally:
        sim.pipeline.experiments = None


def _respond(sim: Simulation, rec: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    items = rec["items"]
    p = examination(len(items)) * sim.world.click_probs(rec["user_id"], items)
    out = []
    for pos in np.flatnonzero(rng.random(len(items)) < p):
        for kind in ("click", "like") if rng.random() < LIKE_GIVEN_CLICK else ("click",):
            out.append({"event_id": f"{rec['feed_id']}:{pos}:{kind}", "user_id": rec["user_id"],
                        "item_id": items[pos], "type": kind, "timestamp": rec["generated_at"],
                        "feed_id": rec["feed_id"], "position": int(pos)})
    return out


def traffic(sim: Simulation, feeds: dict[str, dict[str, Any]], requests: int, seed: int,
            interleave: tuple[dict[str, list[str]], dict[str, list[str]]] | None = None) -> LogRecords:
    """``requests`` feeds to random users, answered by the truth. With ``interleave`` (each user's
    ranking of arm A and arm B) each feed team-drafts the two rankings."""
    rng = np.random.default_rng([seed, 99])
    users = list(feeds)
    out = LogRecords(items=list(sim.log.items))
    now = sim.now
    for k in range(requests):
        now += 1.0
        user = users[int(rng.integers(len(users)))]
        rec = {**feeds[user], "feed_id": f"f{k}", "generated_at": now}
        if interleave is not None:
            items, teams = team_draft(interleave[0][user], interleave[1][user], K, rng)
            rec |= {"items": items, "positions": list(range(len(items))), "teams":
                    ["control" if t == 0 else "treatment" for t in teams]}
        out.impressions.append(rec)
        out.interactions += _respond(sim, rec, rng)
    return out


def detection(report: dict[str, Any]) -> dict[str, Any]:
    """First look where the treatment is declared better on CTR (A/B) or preferred (interleaving);
    a declaration the other way counts as no detection (and is reported)."""
    for point in report["timeline"]:
        if "p_ctr" in point:
            p, better = point["p_ctr"].get("treatment", 1.0), point["diff_ctr"]["treatment"][0] > 0
        else:
            p, better = point["p_always_valid"], point["delta"] > 0
        if p < 0.05:
            return {"detected": better, "wrong_sign": not better, "impressions": point["impressions"]}
    last = report["timeline"][-1]["impressions"] if report["timeline"] else 0
    return {"detected": False, "impressions": last}


def _records(feeds: dict[str, Feed]) -> dict[str, dict[str, Any]]:
    return {u: impression_of(f, "sim").model_dump(mode="json") for u, f in feeds.items()}


def ab_seed(seed: int, users: int, items: int, sigma: float, requests: int) -> dict[str, Any]:
    sim = Simulation(SimConfig(users=users, items=items, seed=seed, warm_events=10_000, background=True),
                     _settings())
    better = NoisyOracle(sim.world, sigma, seed, "better")
    base = calibrate(sim, better, 0.10, seed)
    oracles = {"better": better, "base": base}
    truth = {"control": true_ctr(sim, base), "treatment": true_ctr(sim, better)}
    out: dict[str, Any] = {"seed": seed, "sigma_base": base.sigma, "true_ctr": truth}
    for name, treatment in (("ab", "better"), ("aa", "base")):
        exp = experiment(name, "ab", "base", treatment, sim.now)
        lg = logged(traffic(sim, _records(arm_feeds(sim, exp, oracles)), requests, seed))
        rep = analyse(lg, exp, looks=LOOKS, geometric=True)
        ctr = rep["comparisons"]["treatment"]["ctr"]
        out[name] = {"declared": ctr["declared"], "relative": ctr["relative"],
                     "p_always_valid": ctr["p_always_valid"], "srm_p": rep["sample_ratio"]["p_value"],
                     "srm_mismatch": rep["sample_ratio"]["mismatch"], "decisions": rep["decisions"],
                     "impressions": rep["impressions"], **{"detection": detection(rep)}}
    return out


def power_seed(seed: int, users: int, items: int, sigma: float, requests: int) -> dict[str, Any]:
    """A 5% better ranker: impressions until interleaving prefers it, and until an A/B declares it."""
    sim = Simulation(SimConfig(users=users, items=items, seed=seed, warm_events=10_000, background=True),
                     _settings())
    better = NoisyOracle(sim.world, sigma, seed, "better")
    base = calibrate(sim, better, 0.05, seed)
    oracles = {"better": better, "base": base}
    out: dict[str, Any] = {"seed": seed, "true_lift": true_ctr(sim, better) / true_ctr(sim, base) - 1.0}
    ab = experiment("ab5", "ab", "base", "better", sim.now)
    lg = logged(traffic(sim, _records(arm_feeds(sim, ab, oracles)), requests, seed))
    out["ab"] = detection(analyse(lg, ab, looks=LOOKS, geometric=True))
    both = [arm_feeds(sim, experiment("one", "ab", v, v, sim.now), oracles) for v in ("base", "better")]
    rankings = ({u: [it.item_id for it in f.items] for u, f in both[0].items()},
                {u: [it.item_id for it in f.items] for u, f in both[1].items()})
    inter = experiment("tdi5", "interleave", "base", "better", sim.now)
    recs = {u: {**r, "experiments": {"tdi5": "interleaved"}} for u, r in _records(both[0]).items()}
    lg = logged(traffic(sim, recs, requests // 4, seed, rankings))
    rep = analyse(lg, inter, looks=LOOKS, geometric=True)
    out["interleaving"] = {**detection(rep), "winner": rep["preference"]["winner"]}
    return out


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def summarise(runs: list[dict[str, Any]], power: list[dict[str, Any]]) -> dict[str, Any]:
    tdi = [p["interleaving"] for p in power]
    return {
        "ab_declared_right_sign": sum(r["ab"]["declared"] == "treatment" for r in runs),
        "ab_srm_passed": sum(not r["ab"]["srm_mismatch"] for r in runs),
        "ab_median_impressions_to_detect": _median([r["ab"]["detection"]["impressions"] for r in runs]),
        "aa_declared_nothing": sum(not r["aa"]["decisions"] for r in runs),
        "aa_srm_passed": sum(not r["aa"]["srm_mismatch"] for r in runs),
        "interleaving_detected": sum(t["detected"] and t["winner"] == "treatment" for t in tdi),
        "interleaving_median_impressions": _median([t["impressions"] for t in tdi]),
        "ab_5pct_detected": sum(p["ab"]["detected"] for p in power),
        "ab_5pct_median_impressions": _median([p["ab"]["impressions"] for p in power]),
    }


@app.command("abtest")
def bench_abtest(seeds: int = typer.Option(20, min=1), power_seeds: int = typer.Option(5, min=1),
                 users: int = typer.Option(1000, min=50), items: int = typer.Option(600, min=50),
                 sigma: float = typer.Option(1.0, min=0.0), requests: int = typer.Option(20_000, min=100),
                 power_requests: int = typer.Option(80_000, min=100),
                 json_out: Path = typer.Option(Path("bench_abtest.json"), "--json")) -> None:
    """A/B with a 10% better arm, A/A, and interleaving vs A/B for a 5% better ranker."""
    t0 = time.perf_counter()
    runs = []
    for seed in range(seeds):
        runs.append(ab_seed(seed, users, items, sigma, requests))
        typer.echo(f"seed {seed}: ab {runs[-1]['ab']['declared']} {runs[-1]['ab']['detection']} "
                   f"aa {runs[-1]['aa']['declared']}", err=True)
    power = []
    for seed in range(power_seeds):
        power.append(power_seed(1000 + seed, users, items, sigma, power_requests))
        typer.echo(f"power seed {seed}: {power[-1]}", err=True)
    summary = summarise(runs, power)
    result = {"seeds": seeds, "power_seeds": power_seeds, "users": users, "items": items, "sigma": sigma,
              "requests": requests, "power_requests": power_requests, "feed_size": K, "looks": LOOKS,
              "summary": summary, "runs": runs, "power": power, "seconds": time.perf_counter() - t0}
    json_out.write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps({k: v for k, v in result.items() if k not in ("runs", "power")}, indent=2))
