"""The supervisor with real infra (Tansu, redis-server) and stand-in child processes.

The children here are tiny HTTP servers that load settings exactly as the real processes do, so
the test checks what the stack promises them: resolved endpoints in the env, a free port each,
/readyz polling, a clear error naming a child that dies, and a clean stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from core.errors import StartupError
from core.settings import load_settings
from core.topics import Topics
from services.stack import ProcessSpec, Stack

pytestmark = pytest.mark.integration

CHILD = textwrap.dedent('''
    import json, os, signal, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from core.settings import load_settings

    s = load_settings()
    section, field, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "crash":
        print("boom: cannot start", flush=True)
        sys.exit(3)
    port = getattr(getattr(s, section), field)
    (s.data_dir / f"{section}.json").write_text(json.dumps({
        "bootstrap": s.kafka.bootstrap_servers, "redis": s.redis.url, "port": port,
        "prefix": s.kafka.topic_prefix, "db": s.database.url, "pid": os.getpid()}))

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            ok = mode != "never" or self.path != "/readyz"
            self.send_response(200 if ok else 503)
            self.end_headers()
        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", port), H)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    srv.serve_forever()
''')


@pytest.fixture
def child_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    pkg = tmp_path / "childpkg"
    pkg.mkdir()
    (pkg / "stackdummy.py").write_text(CHILD)
    root = str(Path(__file__).resolve().parents[3])
    monkeypatch.setenv("PYTHONPATH", f"{pkg}:{root}")
    return "stackdummy"


def _specs(module: str, mode: str = "ok") -> list[ProcessSpec]:
    return [ProcessSpec("api", module, "api", "port", args=("api", "port", mode)),
            ProcessSpec("worker", module, "worker", "metrics_port", args=("worker", "metrics_port", "ok"))]


def _listening(port: int) -> bool:
    """True if something still listens (TIME_WAIT leftovers of closed connections do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _our_pids(stack: Stack) -> list[int]:
    return [c.pid for c in [*stack.children.values(), *stack.infra]]


def test_stack_starts_infra_and_children_then_stops_clean(tmp_path: Path, child_module: str,
                                                          topic_prefix: str):
    settings = load_settings(data_dir=str(tmp_path / "data"), kafka={"topic_prefix": topic_prefix})
    stack = Stack(settings, processes=_specs(child_module), ready_timeout_s=30, feast_apply=False)
    with stack:
        pids, ports = _our_pids(stack), dict(stack.ports)
        seen = json.loads((tmp_path / "data" / "api.json").read_text())
        assert seen["bootstrap"] == stack.settings.kafka.bootstrap_servers
        assert seen["redis"] == stack.settings.redis.url and seen["port"] == ports["api"]
        assert seen["prefix"] == topic_prefix and seen["db"].startswith("sqlite:///")
        from kafka.admin import KafkaAdminClient
        admin = KafkaAdminClient(bootstrap_servers=stack.settings.kafka.bootstrap_servers)
        assert set(Topics(topic_prefix).all()) <= set(admin.list_topics())
        admin.close()
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not [p for p in ports.values() if _listening(p)]
    broker_port = int(str(stack.settings.kafka.bootstrap_servers).rsplit(":", 1)[1])
    assert not _listening(broker_port)


def test_child_that_dies_is_named_with_its_log(settings, child_module: str):
    stack = Stack(settings, processes=_specs(child_module, mode="crash"), ready_timeout_s=30,
                  feast_apply=False)
    with pytest.raises(StartupError, match=r"api exited with code 3.*api\.log"):
        stack.start()
    assert "boom" in (settings.data_dir / "logs" / "api.log").read_text()
    assert not stack.children


def test_child_never_ready_times_out_naming_it(settings, child_module: str):
    stack = Stack(settings, processes=_specs(child_module, mode="never"), ready_timeout_s=3,
                  feast_apply=False)
    t0 = time.monotonic()
    with pytest.raises(StartupError, match=r"not ready after 3s: api"):
        stack.start()
    assert time.monotonic() - t0 < 20


def test_busy_port_gets_another_free_port(settings, child_module: str):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        s = settings.model_copy(update={"api": settings.api.model_copy(update={"port": taken})})
        with Stack(s, processes=_specs(child_module), ready_timeout_s=30, feast_apply=False) as stack:
            assert stack.ports["api"] != taken
            assert stack.settings.api.port == stack.ports["api"]


@pytest.mark.parametrize("section", ["kafka", "redis"])
def test_unreachable_dependency_fails_fast_with_clear_error(tmp_path: Path, section: str):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    endpoint = {"kafka": {"bootstrap_servers": f"127.0.0.1:{dead}", "connect_timeout_s": 0.5,
                          "connect_retries": 1},
                "redis": {"url": f"redis://127.0.0.1:{dead}/0", "connect_retries": 1}}
    settings = load_settings(data_dir=str(tmp_path), **{section: endpoint[section]})
    t0 = time.monotonic()
    with pytest.raises(StartupError, match="Kafka" if section == "kafka" else "redis.url"):
        Stack(settings, processes=[], feast_apply=False).start()
    assert time.monotonic() - t0 < 30


FOREGROUND = textwrap.dedent('''
    import sys
    from core.errors import StartupError
    from core.settings import load_settings
    from services.stack import ProcessSpec, Stack

    spec = ProcessSpec("api", "stackdummy", "api", "port", args=("api", "port", "ok"))
    stack = Stack(load_settings(), processes=[spec], ready_timeout_s=30, feast_apply=False,
                  restart_limit=1)
    try:  # the same shape as `streamrec up`
        stack.start()
        print("READY", stack.children["api"].pid, flush=True)
        stack.run_forever()
    except KeyboardInterrupt:
        pass
    except StartupError as exc:
        print("ERROR", exc, flush=True)
        sys.exit(1)
    finally:
        stack.stop()
    print("STOPPED", flush=True)
''')


def _foreground(settings, tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    script = tmp_path / "fg.py"
    script.write_text(FOREGROUND)
    env = {**os.environ, "STREAMREC_DATA_DIR": str(settings.data_dir),
           "STREAMREC_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "STREAMREC_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
           "STREAMREC_REDIS__URL": settings.redis.url}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY"), line
    return proc, int(line.split()[1])


def test_foreground_stack_stops_children_on_sigterm(settings, child_module: str, tmp_path: Path):
    proc, child_pid = _foreground(settings, tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "STOPPED" in out
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == "zombie"


def _api_pid(settings, not_pid: int, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            pid = int(json.loads((settings.data_dir / "api.json").read_text())["pid"])
            if pid != not_pid:
                return pid
        time.sleep(0.2)
    raise AssertionError("the crashed child was not restarted")


def test_crashed_child_is_restarted_then_stack_gives_up_naming_it(settings, child_module: str,
                                                                   tmp_path: Path):
    proc, first = _foreground(settings, tmp_path)
    os.kill(first, signal.SIGKILL)
    second = _api_pid(settings, not_pid=first)  # restart 1 of 1
    os.kill(second, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "restarted 1x already" in out and "api exited with code -9" in out and "api.log" in out
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == "zombie"
