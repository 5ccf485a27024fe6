"""Capacity model: what it takes to ingest 10k, 100k and 1M events/s with 10M users and 10M items.

Reproduces the table in ``deploy/README.md`` from the JSON of ``streamrec bench ingest`` (one worker;
optionally the ``--workers 2`` run for the scaling line)::

    python deploy/capacity.py --ingest deploy/capacity/ingest.json --ingest2 deploy/capacity/ingest2.json \
        [--readme deploy/README.md]

(``--readme``: replace the text between the capacity markers of that file with the table.)

Measured inputs (per event, per core): the worker's CPU seconds per 1,000 events (encoder child
included), Redis' (effects and Feast rows), the memory of the online state per user, per item and per
dedupe marker, and the share of Redis work that lands on the busiest hash slot. Assumptions (flags,
printed with the table): a worker pod is one process on one core run at ``--target`` of it; a Redis
master runs at ``--redis-target`` of a core (headroom for serving reads and failover); the feed API
costs ``--api-cpu-ms`` per feed (``streamrec bench serve``: ~10 ms) and one feed is requested per
``--events-per-feed`` events; dedupe markers live ``--dedupe-ttl-s``.
Standard library only, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

RATES = (10_000, 100_000, 1_000_000)
USERS = ITEMS = 10_000_000
MAX_MASTER_GB = 25.0  # keep a master's dataset small enough to fork/sync and fail over quickly
SHARDS = 256  # feature_store.online.keys.SHARDS: slots the entity keys can spread over
BEGIN, END = "<!-- capacity:begin (deploy/capacity.py) -->", "<!-- capacity:end -->"


def plan(ingest: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    return [row(rate, ingest, args) for rate in RATES]


def row(rate: int, ingest: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    per_1k = ingest["cpu_s_per_1k_events_by_role"]
    worker_rate = 1000.0 / per_1k["workers"]  # events/s one worker process does on a whole core
    pods = math.ceil(rate / (a.target * worker_rate))
    partitions = max(12, 12 * math.ceil(2 * pods / 12))  # room for KEDA to double, multiples of 12
    redis_cores = rate * per_1k["redis"] / 1000.0
    mem = ingest["memory"]
    state_gb = (USERS * (mem["bytes_per_user"] + (mem.get("feast_bytes_per_user") or 0))
                + ITEMS * (mem["bytes_per_item"] + (mem.get("feast_bytes_per_item") or 0))) / 1e9
    dedupe_gb = rate * a.dedupe_ttl_s * (mem["bytes_per_dedupe_marker"] or 0) / 1e9
    masters = max(3, math.ceil(redis_cores / a.redis_target),
                  math.ceil((state_gb + dedupe_gb) / MAX_MASTER_GB))
    hot = ingest["hottest_slot_share"]
    feeds = rate / a.events_per_feed
    api_pods = math.ceil(feeds * a.api_cpu_ms / 1000.0 / a.target)
    pod_mem = (ingest["rss_mb"] + ingest.get("encoder_rss_mb", 0.0)) * 1.2
    return {"events_per_s": rate, "worker_pods": pods, "worker_cores": pods, "partitions": partitions,
            "worker_memory_gb": round(pods * pod_mem / 1024, 1), "api_pods": api_pods,
            "feeds_per_s": round(feeds), "redis_cores": round(redis_cores, 1), "redis_masters": masters,
            "redis_state_gb": round(state_gb, 1), "dedupe_gb": round(dedupe_gb, 1),
            "hottest_slot_core": round(rate * per_1k["redis"] / 1000.0 * hot, 2),
            "first_bound": first_bound(rate, per_1k, hot, pods, masters, a)}


def first_bound(rate: int, per_1k: dict[str, float], hot: float, pods: int, masters: int,
                a: argparse.Namespace) -> str:
    """What stops scaling first at this rate (None of the horizontal parts do: they add pods)."""
    hot_core = rate * per_1k["redis"] / 1000.0 * hot
    if hot_core > a.redis_target:
        return f"the busiest Redis slot needs {hot_core:.2f} cores (one slot cannot be split)"
    if masters > SHARDS // 4:
        return f"{masters} masters > {SHARDS // 4}: fewer than 4 virtual shards each"
    return "none: worker pods, partitions, masters and API pods all still add"


def max_rate(ingest: dict[str, Any], a: argparse.Namespace) -> float:
    """Events/s at which the busiest slot reaches ``redis_target`` of a core."""
    per_event = ingest["cpu_s_per_1k_events_by_role"]["redis"] / 1000.0
    return float(a.redis_target / (per_event * ingest["hottest_slot_share"]))


def markdown(rows: list[dict[str, Any]], ingest: dict[str, Any], a: argparse.Namespace,
             scaling: dict[str, Any] | None) -> str:
    per_1k = ingest["cpu_s_per_1k_events_by_role"]
    lines = [
        f"Measured (`bench ingest`, {ingest['events']:,} events, {ingest['partitions']} partitions): worker "
        f"{per_1k['workers']:.4f} CPU-s / 1k events ({1000 / per_1k['workers']:,.0f} events/s per core), "
        f"Redis {per_1k['redis']:.4f} CPU-s / 1k events, busiest slot {ingest['hottest_slot_share']:.1%} "
        f"of Redis work; state {ingest['memory']['bytes_per_user']:,.0f} B/user + "
        f"{ingest['memory'].get('feast_bytes_per_user') or 0:,.0f} B Feast row, "
        f"{ingest['memory']['bytes_per_item']:,.0f} B/item + "
        f"{ingest['memory'].get('feast_bytes_per_item') or 0:,.0f} B Feast row, "
        f"{ingest['memory']['bytes_per_dedupe_marker'] or 0:,.0f} B/dedupe marker; worker RSS "
        f"{ingest['rss_mb']:.0f} MB + encoder {ingest.get('encoder_rss_mb', 0):.0f} MB.",
        f"Assumed: pods at {a.target:.0%} of a core, Redis masters at {a.redis_target:.0%}, "
        f"{a.api_cpu_ms:g} ms API CPU per feed, one feed per {a.events_per_feed:g} events, dedupe TTL "
        f"{a.dedupe_ttl_s:,.0f} s, at most {MAX_MASTER_GB:g} GB per master.",
        "",
        "| events/s | worker pods (1 core each) | partitions | worker memory | API pods (feeds/s) "
        "| Redis cores | Redis masters | Redis memory: state + dedupe | busiest slot | stops scaling first |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['events_per_s']:,} | {r['worker_pods']} | {r['partitions']} | "
                     f"{r['worker_memory_gb']} GB | {r['api_pods']} ({r['feeds_per_s']:,}) | "
                     f"{r['redis_cores']} | {r['redis_masters']} | "
                     f"{r['redis_state_gb']} + {r['dedupe_gb']} GB | {r['hottest_slot_core']} core | "
                     f"{r['first_bound']} |")
    lines.append("")
    lines.append(f"The busiest slot saturates ({a.redis_target:.0%} of a core) at about "
                 f"{max_rate(ingest, a):,.0f} events/s.")
    if scaling is not None:
        one = scaling["single_worker"]["events_per_s"]
        lines.append(f"Two workers on this machine: {scaling['events_per_s']:,.0f} events/s vs {one:,.0f} "
                     f"for one ({scaling['scaling']:.2f}x); machine busy "
                     f"{scaling['machine_busy_fraction']:.0%} of {scaling['machine_cores']} cores.")
    return "\n".join(lines)


def into_readme(path: Path, text: str) -> None:
    """Replace what lies between the markers of ``path`` with ``text``."""
    doc = path.read_text()
    head, sep, rest = doc.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} section")
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ingest", type=Path, required=True, help="bench ingest JSON (one worker)")
    p.add_argument("--ingest2", type=Path, help="bench ingest --workers 2 JSON (scaling line)")
    p.add_argument("--target", type=float, default=0.7, help="share of a core a worker/API pod runs at")
    p.add_argument("--redis-target", type=float, default=0.5, help="share of a core a Redis master runs at")
    p.add_argument("--api-cpu-ms", type=float, default=10.0, help="API CPU per feed (bench serve)")
    p.add_argument("--events-per-feed", type=float, default=25.0, help="events produced per feed served")
    p.add_argument("--dedupe-ttl-s", type=float, default=3600.0, help="worker.dedupe_ttl_s")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--readme", type=Path, help="write the table between the capacity markers of this file")
    a = p.parse_args(argv)
    ingest = json.loads(a.ingest.read_text())
    scaling = json.loads(a.ingest2.read_text()) if a.ingest2 else None
    rows = plan(ingest, a)
    text = json.dumps(rows, indent=2) if a.json else markdown(rows, ingest, a, scaling)
    if a.readme is not None:
        into_readme(a.readme, text)
    print(text)
    return text


if __name__ == "__main__":
    main()
