"""What `streamrec up` prints and what `streamrec status` says, without starting anything."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

import services.cli.stack as cli
from core.settings import load_settings
from services.stackstatus import NOT_READY, NOT_RUNNING, READY, read_status


def test_export_hint_and_every_address_print_unwrapped_on_a_narrow_terminal(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path):
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=40, color_system=None))
    settings = load_settings(data_dir=str(tmp_path), kafka={"bootstrap_servers": "127.0.0.1:40001"},
                             redis={"url": "redis://127.0.0.1:40002/0"})
    ports = {"worker": 40003, "api": 40004}
    stack = SimpleNamespace(settings=settings, ports=ports, log_dir=tmp_path / "logs",
                            status_path=tmp_path / "stack.json",
                            url=lambda name, path="": f"http://127.0.0.1:{ports[name]}{path}")
    cli._print_endpoints(stack)  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    export = [line for line in lines if "STREAMREC_KAFKA" in line]
    assert export == [f"Other shells: export STREAMREC_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:40001 "
                      f"STREAMREC_REDIS__URL=redis://127.0.0.1:40002/0 STREAMREC_DATA_DIR={tmp_path}"]
    for name, where in [("kafka", "127.0.0.1:40001"), ("redis", "redis://127.0.0.1:40002/0"),
                        ("worker", "http://127.0.0.1:40003"), ("api", "http://127.0.0.1:40004")]:
        assert f"  {name:<10} {where}" in lines


def _write(path: Path, **status: object) -> None:
    path.write_text(json.dumps({"pid": os.getpid(), "updated_at": time.time(), "ready": True,
                                "not_ready": [], "components": {}, **status}))


def test_status_reads_ready_not_ready_stale_stopped_and_gone(tmp_path: Path):
    path = tmp_path / "stack.json"
    assert read_status(path).exit_code == NOT_RUNNING  # no file: never started here
    _write(path)
    assert read_status(path).exit_code == READY
    _write(path, ready=False, not_ready=["redis is down (restart in 2.0s)"])
    report = read_status(path)
    assert report.exit_code == NOT_READY and "redis is down" in report.headline
    _write(path, updated_at=time.time() - 120)  # the supervisor hangs: its file is stale
    assert read_status(path).exit_code == NOT_READY
    _write(path, stopped_at=time.time())
    assert read_status(path).exit_code == NOT_RUNNING
    _write(path, pid=2**22 + 12345)  # a pid that cannot exist: killed without stopping the stack
    report = read_status(path)
    assert report.exit_code == NOT_RUNNING and "gone" in report.headline
