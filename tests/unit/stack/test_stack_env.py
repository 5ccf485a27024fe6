"""settings_env: a child process that loads its settings from the env gets the parent's tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.settings import load_settings
from services.stack import ProcessSpec, available_processes
from services.stack_setup import settings_env


def test_env_round_trips_the_whole_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key in [k for k in os.environ if k.startswith("STREAMREC_")]:
        monkeypatch.delenv(key)
    parent = load_settings(
        data_dir=str(tmp_path), kafka={"bootstrap_servers": "h:1", "topic_prefix": "p-",
                                       "sasl_password": "s3cret-value"},
        redis={"url": "redis://h:2/0"}, api={"port": 1234},
        worker={"segment_keys": ["device", "country"]},
        rerank={"rules": [{"kind": "pin", "name": "promo", "item_ids": ["i1"], "position": 1}]},
        ranking={"head_weights": {"click": 2.0}},
    )
    env = settings_env(parent)
    assert env["STREAMREC_API__PORT"] == "1234"
    assert env["STREAMREC_DATA_DIR"] == str(tmp_path.resolve())
    (tmp_path / "other.toml").write_text("[api]\nport = 9\n")
    for key, value in {**env, "STREAMREC_CONFIG": str(tmp_path / "other.toml")}.items():
        monkeypatch.setenv(key, value)
    child = load_settings()
    assert child.model_dump() == parent.model_dump()
    assert child.kafka.sasl_password is not None
    assert child.kafka.sasl_password.get_secret_value() == "s3cret-value"


def test_missing_process_modules_are_skipped_not_fatal():
    specs = [ProcessSpec("x", "no_such_pkg.nowhere", "api", "port"),
             ProcessSpec("y", "services.stack", "api", "port")]
    assert [s.name for s in available_processes(specs)] == ["y"]
