"""The serving step of ``streamrec eval`` alone, timed: CPU per test user of the funnel, in-process store.

Replays the leave-one-out training log of a CSV (``models.synthetic_log`` writes one) up to the middle
test user, then serves the next ``--users`` test users at their test times exactly as the eval does
(replay to each user's time, ``Pipeline.feed``), without trained models (the heuristic funnel: what the
store's reads cost, not the models'). Prints one JSON line.

    python deploy/bench/eval_serving.py var/bench/syn1m.csv --users 400
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.evaluation import LIST_N, catalog, training_log
from funnel.modelset import ModelSet, ModelSlot
from funnel.pipeline import Pipeline
from funnel.replay import Replay
from models.data import leave_one_out, load_csv, load_items_csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--users", type=int, default=400)
    args = ap.parse_args()
    data = load_csv(args.log)
    items = args.log.with_name(args.log.stem + ".items.csv")
    if items.exists():
        data.attach_items(load_items_csv(items))
    split = leave_one_out(data)
    settings = Settings()
    run_log = training_log(data, split, 4.0)
    store = MemoryOnline(settings)
    replay = Replay(run_log, catalog(data, None), store)
    pipeline = Pipeline(settings, store, ModelSlot(ModelSet()), reader=store)
    users = split.eval_users()
    order = users[np.argsort(split.test_ts[users], kind="stable")]
    mid = len(order) // 2
    started = time.process_time()
    replay.advance(int(np.searchsorted(run_log.ts, float(split.test_ts[order[mid]]), "right")))
    replay_s = time.process_time() - started
    started = time.process_time()
    for u in order[mid:mid + args.users]:
        ts = float(split.test_ts[u])
        replay.advance(int(np.searchsorted(run_log.ts, ts, "right")), until_ts=ts)
        pipeline.feed(data.user_ids[int(u)], n=LIST_N, now=ts)
    serve_s = time.process_time() - started
    print(json.dumps({"users": args.users, "serve_cpu_s": round(serve_s, 2),
                      "users_per_cpu_s": round(args.users / serve_s, 1),
                      "replay_to_middle_cpu_s": round(replay_s, 1), "events": len(run_log)}))


if __name__ == "__main__":
    main()
