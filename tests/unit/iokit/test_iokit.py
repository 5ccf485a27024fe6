"""The shared I/O helpers: retry with capped backoff, ports that are remembered, atomic JSON."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

import iokit.backoff as retry_mod
from core.errors import StartupError
from iokit import FileLock, PortBook, backoff_delay, port_is_free, read_json, retry, write_json_atomic


def test_backoff_doubles_then_caps():
    assert [backoff_delay(i, 0.5, 3.0) for i in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(10_000, 1.0, 60.0) == 60.0  # no overflow on a huge attempt count


def test_retry_returns_after_transient_failures_sleeping_with_backoff(monkeypatch: pytest.MonkeyPatch):
    sleeps: list[float] = []
    monkeypatch.setattr(retry_mod.time, "sleep", sleeps.append)
    calls = iter([OSError("down"), OSError("down"), "ok"])

    def fn() -> str:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert retry("thing", fn, attempts=5, delay_s=0.2, max_delay_s=0.3) == "ok"
    assert sleeps == [0.2, 0.3]


def test_retry_gives_up_naming_the_target_without_a_last_useless_sleep(monkeypatch: pytest.MonkeyPatch):
    sleeps: list[float] = []
    monkeypatch.setattr(retry_mod.time, "sleep", sleeps.append)

    def fail() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(StartupError, match=r"Redis at redis\.url unreachable after 3 attempts: refused"):
        retry("Redis at redis.url", fail, attempts=3, delay_s=0.1)
    assert len(sleeps) == 2


def test_port_book_reuses_a_remembered_port_and_replaces_a_taken_one(tmp_path: Path):
    book = PortBook(tmp_path / "ports.json")
    first = book.choose("redis")
    book.save()
    again = PortBook(tmp_path / "ports.json")
    assert again.choose("redis") == first
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", first))
        busy.listen()
        assert not port_is_free(first)
        moved = again.choose("redis")
    assert moved != first and again.ports["redis"] == moved


def test_port_book_prefers_the_configured_port_when_free(tmp_path: Path):
    book = PortBook(tmp_path / "ports.json")
    remembered = book.choose("api")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        configured = s.getsockname()[1]
    assert book.choose("api", configured=configured) == configured != remembered


def test_port_book_ignores_a_corrupt_file(tmp_path: Path):
    (tmp_path / "ports.json").write_text("{not json")
    assert PortBook(tmp_path / "ports.json").ports == {}


def test_atomic_json_round_trip_and_lenient_read(tmp_path: Path):
    path = tmp_path / "sub" / "status.json"
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1} == read_json(path)
    assert read_json(tmp_path / "missing.json", default={}) == {}
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]  # no temp file left


def test_file_lock_is_exclusive_across_processes_and_released_on_exit(tmp_path: Path):
    import subprocess
    import sys

    lock = FileLock(tmp_path / "x.lock")
    assert lock.acquire() and lock.acquire()  # re-entrant in the holder
    probe = ("import sys; from pathlib import Path; from iokit import FileLock; "
             "sys.exit(0 if FileLock(Path(sys.argv[1])).acquire() else 7)")
    assert subprocess.run([sys.executable, "-c", probe, str(tmp_path / "x.lock")]).returncode == 7
    lock.release()
    assert subprocess.run([sys.executable, "-c", probe, str(tmp_path / "x.lock")]).returncode == 0
