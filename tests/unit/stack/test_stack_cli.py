"""CLI start-up errors: a malformed config names the key; a missing broker is a clear message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.stack import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("STREAMREC_")]:
        monkeypatch.delenv(key)


@pytest.mark.parametrize("command", ["up", "demo", "feeds"])
def test_malformed_config_fails_at_start_naming_the_key(tmp_path: Path, command: str):
    bad = tmp_path / "bad.toml"
    bad.write_text('[kafka]\npartitions = 0\n[api]\nport = "eighty"\n')
    result = runner.invoke(app, [command, "--config", str(bad)])
    assert result.exit_code == 2
    assert "kafka.partitions" in result.output and "api.port" in result.output


def test_unknown_key_is_named(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[redis]\nurll = 'redis://x'\n")
    result = runner.invoke(app, ["up", "--config", str(bad)])
    assert result.exit_code == 2 and "redis.urll" in result.output


def test_produce_without_a_broker_says_how_to_get_one(tmp_path: Path):
    f = tmp_path / "in.jsonl"
    f.write_text('{"user_id": "u1", "item_id": "i1", "type": "click"}\n')
    result = runner.invoke(app, ["produce", str(f)])
    assert result.exit_code == 2 and "kafka.bootstrap_servers" in result.output


def test_demo_fails_loudly_on_broken_invariants_or_crashes():
    from services.cli.stack import demo_problems

    good = {"events_produced": 10, "feeds_published": 2, "invariant_holds": True, "child_restarts": {}}
    assert demo_problems(good) == []
    assert len(demo_problems({**good, "invariant_holds": False})) == 1
    assert "worker" in demo_problems({**good, "child_restarts": {"worker": 1}})[0]
    assert demo_problems({**good, "feeds_published": 0})
