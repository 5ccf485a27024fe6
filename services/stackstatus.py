"""Reading the status file a running ``streamrec up`` keeps (``data_dir/stack.json``), for
``streamrec status`` and for anything else that wants to know whether the local stack is ready."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iokit import read_json

READY, NOT_READY, NOT_RUNNING = 0, 1, 3
STALE_S = 30.0  # the supervisor rewrites the file every half second


@dataclass
class StatusReport:
    exit_code: int
    headline: str
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def components(self) -> dict[str, dict[str, Any]]:
        comps = self.raw.get("components")
        return comps if isinstance(comps, dict) else {}


def read_status(path: Path, now: float | None = None) -> StatusReport:
    """What the file at ``path`` says, checked against reality (is its supervisor alive and writing?)."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        return StatusReport(NOT_RUNNING, f"not running: no status file at {path} (`streamrec up` starts it)")
    pid = int(raw.get("pid") or 0)
    if raw.get("stopped_at"):
        return StatusReport(NOT_RUNNING, f"not running: stopped at {_when(raw['stopped_at'])}", raw)
    if not _alive(pid):
        return StatusReport(NOT_RUNNING, f"not running: its supervisor (pid {pid}) is gone without stopping "
                                         f"the stack; last status {_when(raw.get('updated_at'))}", raw)
    age = (now if now is not None else time.time()) - float(raw.get("updated_at") or 0)
    if age > STALE_S:
        return StatusReport(NOT_READY, f"NOT READY: the supervisor (pid {pid}) has not updated {path} "
                                       f"for {age:.0f}s", raw)
    if raw.get("ready"):
        return StatusReport(READY, f"READY (supervisor pid {pid}, data_dir {raw.get('data_dir')})", raw)
    return StatusReport(NOT_READY, "NOT READY: " + "; ".join(raw.get("not_ready") or ["starting"]), raw)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _when(ts: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
    except (TypeError, ValueError):
        return "unknown"
