"""Child processes in their own process group (so a stop takes their children with them), logging
to a file, with a bounded stop (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass
class ChildProcess:
    """A child in its own process group; ``stop`` sends SIGTERM, then SIGKILL after a grace period."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """False once the child has exited (and reaps it: no zombie is left behind)."""
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace_s: float = 10.0) -> int:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        self.signal(signal.SIGKILL)  # any grandchildren left in the group
        return int(self.proc.returncode or 0)


# Importing Feast exports these (feast/metrics.py), which would put every child's prometheus_client in
# multi-process mode: metrics of separate registries sharing mmap files. Children get them only when
# the caller passes them explicitly.
INHERITED_NOT = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR", "prometheus_multiproc_dir")


def child_env(env: dict[str, str] | None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in INHERITED_NOT}
    return {**base, **(env or {})}


def spawn(name: str, argv: list[str], log_dir: Path | None = None,
          env: dict[str, str] | None = None) -> ChildProcess:
    """Start ``argv`` in a new session (own process group), appending to ``log_dir/name.log``."""
    log_path = None
    out: int | IO[bytes] = subprocess.DEVNULL
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        out = log_path.open("ab")
    try:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=child_env(env))
    finally:
        if not isinstance(out, int):
            out.close()  # the child holds its own descriptor
    return ChildProcess(name, proc, log_path)


def log_tail(path: Path | None, lines: int = 12) -> str:
    """The last ``lines`` lines of a log file, each indented with ``    | `` (for error messages)."""
    if path is None or not path.is_file():
        return ""
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - 16384))
        text = fh.read().decode(errors="replace")
    return "\n".join("    | " + line for line in text.splitlines()[-lines:])
