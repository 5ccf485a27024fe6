"""``streamrec bench explore``: Thompson exploration against uniform exploration on the same new items.

    flock /work/notes/cpu.lock streamrec bench explore --json bench_explore.json

Two closed-loop runs of the funnel on the same simulated world (same users, same request schedule,
the same ``--wave-size`` new items arriving in each of ``--waves`` waves), identical but for
``rerank.explore_policy``: ``thompson`` (Beta posteriors the worker keeps from impressions and
attributed clicks) or ``uniform`` (a uniformly random pick from the same exploration pool). Reported
per policy, over the exploration slots that showed a new item (one created during the run): the
observed CTR and the true CTR (the hidden click probability times the examination of the slot, no
sampling noise), over the whole run and per window of requests (``timeline``; ``late`` is the last
quarter of each wave, once the posteriors have had traffic); and over every exploration slot, the
regret against the simulator's oracle (the pool item with the highest click probability for that
user) and its cumulative curve.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

from funnel.pipeline import FeedResult
from services.experiments.simulation import SimConfig, Simulation, examination, sim_settings

app = typer.Typer(help="Thompson vs uniform exploration of new items.")


class Tally:
    """Per-policy counters, filled while the run serves."""

    def __init__(self, sim: Simulation, new_items: set[str]) -> None:
        self.sim, self.new_items = sim, new_items
        self.rows: list[tuple[int, bool, float]] = []  # (request, clicked, true CTR): new-item explore slots
        self.regret: list[float] = []

    def on_feed(self, k: int, user: str, result: FeedResult, clicked: set[int]) -> None:
        theta = examination(len(result.feed.items))
        for pos, dist in result.explore.items():
            pick = result.feed.items[pos].item_id
            pool = list(dist)
            probs = self.sim.world.click_probs(user, pool)
            p_pick = float(probs[pool.index(pick)])
            self.regret.append(float(theta[pos] * (probs.max() - p_pick)))
            if pick in self.new_items:
                self.rows.append((k, pos in clicked, float(theta[pos]) * p_pick))

    @staticmethod
    def _ctr(rows: list[tuple[int, bool, float]]) -> dict[str, Any]:
        n = len(rows)
        return {"impressions": n, "ctr": sum(c for _, c, _ in rows) / max(n, 1),
                "true_ctr": sum(t for _, _, t in rows) / max(n, 1)}

    def summary(self, requests: int, waves: int) -> dict[str, Any]:
        cum = np.cumsum(self.regret) if self.regret else np.zeros(1)
        marks = np.linspace(0, len(cum) - 1, 21).astype(int)
        wave = requests // waves
        late = [r for r in self.rows if r[0] % wave >= wave * 3 // 4]
        windows = np.linspace(0, requests, 17).astype(int)
        return {"new_items": self._ctr(self.rows), "new_items_late": self._ctr(late),
                "timeline": [{"requests": int(b), **self._ctr([r for r in self.rows if a <= r[0] < b])}
                             for a, b in zip(windows, windows[1:], strict=False)],
                "explore_slots": len(self.regret), "regret_total": float(cum[-1]),
                "regret_per_slot": float(cum[-1] / max(len(self.regret), 1)),
                "regret_curve": [{"slot": int(m) + 1, "cumulative": float(cum[m])} for m in marks]}


def run_policy(policy: str, seed: int, requests: int, users: int, items: int, waves: int,
               wave_size: int, world: dict[str, Any] | None = None) -> dict[str, Any]:
    settings = sim_settings(10, rerank={"explore_policy": policy})
    cfg = SimConfig(users=users, items=items, seed=seed, warm_events=15_000, world=world or {})
    sim = Simulation(cfg, settings)
    new_items: set[str] = set()
    tally = Tally(sim, new_items)
    rng = np.random.default_rng([seed, 5])
    for k in range(requests):
        if k % (requests // waves) == 0:
            fresh = sim.world.add_items(wave_size, sim.now)
            sim.add_items(fresh)
            new_items.update(it.item_id for it in fresh)
        sim.now += sim.cfg.gap_s
        user = sim.world.user_ids[int(rng.integers(len(sim.world.user_ids)))]
        result = sim.serve(user)
        events = sim.respond(result.feed)
        tally.on_feed(k, user, result, {int(e.position) for e in events
                                        if e.type == "click" and e.position is not None})
    return {"policy": policy, "new_items_created": len(new_items), **tally.summary(requests, waves)}


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float:
    return float(a[key] / b[key]) if b[key] else float("nan")


@app.command("explore")
def bench_explore(requests: int = typer.Option(8000, min=100), users: int = typer.Option(500, min=10),
                  items: int = typer.Option(400, min=50), waves: int = typer.Option(2, min=1),
                  wave_size: int = typer.Option(15, min=1), seed: int = typer.Option(0),
                  quality_std: float = typer.Option(0.5, min=0.0, help="spread of the items' hidden quality"),
                  json_out: Path = typer.Option(Path("bench_explore.json"), "--json")) -> None:
    """New-item CTR of Thompson vs uniform exploration, and regret against the oracle."""
    t0 = time.perf_counter()
    world = {"quality_std": quality_std}
    runs = {p: run_policy(p, seed, requests, users, items, waves, wave_size, world)
            for p in ("thompson", "uniform")}
    t, u = runs["thompson"], runs["uniform"]
    result = {"requests": requests, "users": users, "items": items, "waves": waves, "wave_size": wave_size,
              "seed": seed, "quality_std": quality_std, "policies": runs,
              "new_item_true_ctr_ratio": _ratio(t["new_items"], u["new_items"], "true_ctr"),
              "new_item_ctr_ratio": _ratio(t["new_items"], u["new_items"], "ctr"),
              "late_true_ctr_ratio": _ratio(t["new_items_late"], u["new_items_late"], "true_ctr"),
              "late_ctr_ratio": _ratio(t["new_items_late"], u["new_items_late"], "ctr"),
              "regret_ratio": t["regret_total"] / max(u["regret_total"], 1e-12),
              "seconds": time.perf_counter() - t0}
    json_out.write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps({k: v for k, v in result.items() if k != "policies"}, indent=2))
