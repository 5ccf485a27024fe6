"""Measuring helpers of ``streamrec bench ingest``: CPU and memory of the processes involved, the
machine's busy share, and the effect / Feast-row latency of sampled events.

* :class:`Sampler` reads, every ``interval``, the processed count (the workers' durable stats) and the
  CPU seconds of each role (workers with their children, redis-server(s), the broker, this process)
  and of the whole machine (``/proc/stat``), and the workers' memory;
* :class:`LatencyProbe` watches sampled events: *effect* = the event's dedupe marker is in Redis
  (written by the same script as every effect of it); *feature* = Feast's ``user_realtime`` row of its
  user carries a row timestamp at or after the event's (the row of the state that includes it).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp

from core.features import USER_KEY, USER_REALTIME
from feature_store.online.keys import Keys

ROLES = ("workers", "redis", "broker", "bench")
POLL_S = 0.02  # the probe's polling period: its latencies are late by up to this much
# The oldest pending samples polled per round (in send order): a round's cost stays bounded when the
# worker falls behind (polling thousands of samples every 20 ms took 0.4 of a core from this process
# and Redis, slowing the worker it measures); a newer sample applied before 128 older ones is then
# seen late, so latencies can only read high.
POLL_MAX = 128


def cpu_s(procs: Sequence[psutil.Process], children: bool = False) -> float:
    total = 0.0
    for p in procs:
        try:
            group = [p, *p.children(recursive=True)] if children else [p]
            for q in group:
                t = q.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot, all cores."""
    with open("/proc/stat") as fh:
        fields = [float(x) for x in fh.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / tick, sum(fields) / tick


@dataclass
class Sample:
    t: float
    processed: int
    cpu: dict[str, float]
    machine: tuple[float, float]


@dataclass
class Sampler:
    """Samples until ``stop``; ``workers`` may change (restarts), read through ``pids``."""

    processed: Callable[[], int]
    pids: Callable[[str], list[int]]  # role -> pids
    samples: list[Sample] = field(default_factory=list)
    rss_mb: float = 0.0
    child_rss_mb: float = 0.0

    def sample(self) -> Sample:
        cpu = {}
        for role in ROLES:
            procs = [psutil.Process(p) for p in self.pids(role) if psutil.pid_exists(p)]
            cpu[role] = cpu_s(procs, children=role == "workers")
        self._memory()
        s = Sample(time.monotonic(), self.processed(), cpu, machine_busy_s())
        self.samples.append(s)
        return s

    def _memory(self) -> None:
        for pid in self.pids("workers"):
            try:
                p = psutil.Process(pid)
                self.rss_mb = max(self.rss_mb, p.memory_info().rss / 2**20)
                for c in p.children(recursive=True):
                    self.child_rss_mb = max(self.child_rss_mb, c.memory_info().rss / 2**20)
            except psutil.Error:
                continue

    def window(self, lo: float, hi: float, total: int) -> dict[str, Any]:
        """Rates between the samples where ``lo`` and ``hi`` of ``total`` were processed."""
        a = next(s for s in self.samples if s.processed >= lo * total)
        b = next((s for s in self.samples if s.processed >= hi * total), self.samples[-1])
        n = max(b.processed - a.processed, 1)
        per_1k = {role: round(1000 * (b.cpu[role] - a.cpu[role]) / n, 4) for role in ROLES}
        return {"events_per_s": round(n / max(b.t - a.t, 1e-6), 1), "cpu_s_per_1k_events": per_1k["workers"],
                "cpu_s_per_1k_events_by_role": per_1k, **self.between(a, b),
                "machine_cores": psutil.cpu_count(), "window_s": round(b.t - a.t, 2)}

    @staticmethod
    def between(a: Sample, b: Sample) -> dict[str, Any]:
        """The cores each role used between two samples, and how busy the whole machine was."""
        secs = max(b.t - a.t, 1e-6)
        busy = (b.machine[0] - a.machine[0]) / max(b.machine[1] - a.machine[1], 1e-6)
        return {"cores_used_by_role": {role: round((b.cpu[role] - a.cpu[role]) / secs, 3) for role in ROLES},
                "machine_busy_fraction": round(busy, 3)}


def user_row_key(project: str, user_id: str) -> bytes:
    ek = EntityKey(join_keys=[USER_KEY], entity_values=[Value(string_val=user_id)])
    return bytes(serialize_entity_key(ek, entity_key_serialization_version=3)) + project.encode()


def row_us(raw: bytes | None) -> int:
    if not raw:
        return -1
    ts = Timestamp()
    ts.ParseFromString(raw)
    return int(ts.seconds * 1_000_000 + ts.nanos // 1000)


class LatencyProbe:
    """Polls sampled events' effects and Feast rows from a thread (``client``: a sync redis client,
    RedisCluster included)."""

    def __init__(self, client: Any, keys: Keys, project: str | None) -> None:
        self.client, self.keys, self.project = client, keys, project
        self.sent: dict[str, tuple[float, str, int]] = {}  # event id -> (sent at, user, event us)
        self.effect: dict[str, float] = {}
        self.feature: dict[str, float] = {}
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, event_id: str, user_id: str, event_ts: float) -> None:
        with self._lock:
            self.sent[event_id] = (time.monotonic(), user_id, int(round(event_ts * 1_000_000)))

    def finish(self, wait_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not self._complete():
            time.sleep(0.05)
        self._done.set()
        self._thread.join(5)
        return self.summary()

    def _complete(self) -> bool:
        n = len(self.sent)
        return len(self.effect) >= n and (self.project is None or len(self.feature) >= n)

    def _run(self) -> None:
        field_name = f"_ts:{USER_REALTIME.view}".encode()
        while not self._done.is_set():
            with self._lock:
                sent = list(self.sent.items())
            pending = [(e, v) for e, v in sent if e not in self.effect or
                       (self.project is not None and e not in self.feature)][:POLL_MAX]
            if pending:
                self._poll(pending, field_name)
            time.sleep(POLL_S)

    def _poll(self, pending: list[tuple[str, tuple[float, str, int]]], field_name: bytes) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for e, (_, user, _) in pending:
                pipe.exists(self.keys.dedupe(user, e))
                if self.project is not None:
                    pipe.hget(user_row_key(self.project, user), field_name)
            res = pipe.execute()
        now, step = time.monotonic(), 2 if self.project is not None else 1
        for j, (e, (_, _, us)) in enumerate(pending):
            if res[step * j] and e not in self.effect:
                self.effect[e] = now
            if self.project is not None and row_us(res[step * j + 1]) >= us and e not in self.feature:
                self.feature[e] = now

    def summary(self) -> dict[str, Any]:
        def pct(done: dict[str, float]) -> tuple[float | None, float | None]:
            lat = np.array([done[e] - self.sent[e][0] for e in done]) * 1000
            if not len(lat):
                return None, None
            return round(float(np.percentile(lat, 50)), 1), round(float(np.percentile(lat, 99)), 1)

        e50, e99 = pct(self.effect)
        f50, f99 = pct(self.feature)
        return {"effect_latency_ms_p50": e50, "effect_latency_ms_p99": e99,
                "feature_latency_ms_p50": f50, "feature_latency_ms_p99": f99,
                "latency_samples": len(self.sent), "latency_poll_ms": POLL_S * 1000,
                "effect_missing": len(self.sent) - len(self.effect),
                "feature_missing": (len(self.sent) - len(self.feature)) if self.project else None}


USER_KINDS = ("fs:user", "hist", "seen", "imp", "user")
ITEM_KINDS = ("fs:item", "cv", "lin", "item", "vec")


def memory_profile(client: Any, prefix: str, project: str | None, users: Sequence[str],
                   items: Sequence[str], sample: int = 200) -> dict[str, Any]:
    """Bytes of the online state per user, per item and per dedupe marker (``MEMORY USAGE`` of a
    sample of keys of each kind, times their counts), and of Feast's rows, for the capacity model."""
    from feature_store.online.keys import Keys

    keys = Keys(prefix)
    kinds: dict[str, list[str]] = {
        "fs:user": [keys.user_features(u) for u in users], "hist": [keys.history(u) for u in users],
        "seen": [keys.seen(u) for u in users], "imp": [keys.impressions(u) for u in users],
        "user": [keys.user(u) for u in users], "fs:item": [keys.item_features(i) for i in items],
        "cv": [keys.covisit(i) for i in items], "lin": [keys.linear(i) for i in items],
        "item": [keys.item(i) for i in items], "vec": [keys.vector(i) for i in items]}
    out: dict[str, Any] = {"bytes_per_key": {}}
    for kind, names in kinds.items():
        sizes = _usage(client, names[:sample])
        present = len(sizes)
        out["bytes_per_key"][kind] = round(sum(sizes) / present, 1) if present else 0.0
        out[f"share_present:{kind}"] = round(present / max(1, min(sample, len(names))), 3)
    per = out["bytes_per_key"]
    out["bytes_per_user"] = round(sum(per[k] * out[f"share_present:{k}"] for k in USER_KINDS), 1)
    out["bytes_per_item"] = round(sum(per[k] * out[f"share_present:{k}"] for k in ITEM_KINDS), 1)
    markers = [k for k in client.scan_iter(match=f"{prefix}*:dd:*".encode(), count=1000)][:sample]
    sizes = _usage(client, markers)
    out["bytes_per_dedupe_marker"] = round(sum(sizes) / len(sizes), 1) if sizes else None
    if project is not None:
        out["feast_bytes_per_user"] = _mean(_usage(client, [user_row_key(project, u)
                                                            for u in users[:sample]]))
        out["feast_bytes_per_item"] = _mean(_usage(client, [item_row_key(project, i)
                                                            for i in items[:sample]]))
    return out


def _usage(client: Any, names: Sequence[Any]) -> list[int]:
    with client.pipeline(transaction=False) as pipe:
        for n in names:
            pipe.memory_usage(n, samples=0)
        return [int(v) for v in pipe.execute() if v is not None]


def _mean(sizes: list[int]) -> float | None:
    return round(sum(sizes) / len(sizes), 1) if sizes else None


def item_row_key(project: str, item_id: str) -> bytes:
    from core.features import ITEM_KEY

    ek = EntityKey(join_keys=[ITEM_KEY], entity_values=[Value(string_val=item_id)])
    return bytes(serialize_entity_key(ek, entity_key_serialization_version=3)) + project.encode()


def hottest_slot_share(settings: Any, world: Any, warm: int = 20_000, batch: int = 2_000) -> dict[str, Any]:
    """The share of a batch's Redis writes that land on its busiest hash tag (one slot of a cluster),
    counted as Redis commands per op, on a batch of the bench's traffic after ``warm`` events (planned
    by the worker's own code, in process). Feast's rows are left out: their keys spread over every slot."""
    import time as _time

    from feature_store.online.batch import SnapshotRequest, plan_interaction_batch
    from feature_store.online.memory_state import MemoryOnline
    from feature_store.online.plan import grouped

    mem = MemoryOnline(settings)
    mem.apply_items(world.item_upserts(_time.time() - 3600), {})
    events = list(world.traffic(warm + batch, _time.time() - 600, 300.0))
    for k in range(0, warm, batch):
        mem.apply_interactions(events[k:k + batch])
    fresh = events[warm:]
    snap = mem._snapshot(SnapshotRequest.for_events(fresh, mem.params))  # noqa: SLF001 - same read
    plan = plan_interaction_batch(fresh, snap, mem.params, mem.tparams, mem.keys)
    work: dict[str, int] = {}
    for (_, tag), ops in grouped(plan).items():
        work[tag] = work.get(tag, 0) + sum(_calls(code, arg) for code, _, arg in ops)
    for ev in fresh:  # dedupe markers go with their user
        from feature_store.online.keys import tag as tag_of

        work[tag_of(ev.user_id)] = work.get(tag_of(ev.user_id), 0) + 1
    total = sum(work.values())
    top = max(work, key=lambda t: work[t])
    return {"hottest_slot_share": round(work[top] / total, 4), "hottest_slot_tag": top,
            "tags_per_batch": len(work)}


def _calls(code: str, arg: Any) -> int:
    if code in ("zi", "hi", "hb"):
        return len(arg) // 2  # flat pairs (plan.ops)
    if code == "im":
        return 5
    return 1
