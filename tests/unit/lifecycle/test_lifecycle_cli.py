"""``streamrec models list|promote|rollback`` and ``jobs list`` against a real SQLite registry."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from services.artifacts import open_store
from services.cli.lifecycle import app
from services.metadata import MetadataStore


def _seed(data_dir: Path) -> None:
    store = open_store(f"file://{data_dir / 'artifacts'}")
    meta = MetadataStore(f"sqlite:///{data_dir / 'metadata.db'}")
    for n in (1, 2):
        src = data_dir / f"w{n}.bin"
        src.write_bytes(bytes([n]) * 10)
        version = store.publish("ranker", {"weights.pt": src}, {})
        meta.add_model("ranker", version, metrics={"auc.click": 0.5 + n / 10})
        meta.promote_model("ranker", version, "test")
        store.set_active("ranker", version)
    meta.close()


def test_models_list_rollback_promote_and_jobs(tmp_path: Path) -> None:
    _seed(tmp_path)
    env = {"STREAMREC_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert {(m["version"], m["status"]) for m in json.loads(listed.output)} == {
        ("000001", "retired"), ("000002", "active")}
    back = runner.invoke(app, ["models", "rollback", "--kind", "ranker"], env=env)
    assert back.exit_code == 0 and "000001" in back.output, back.output
    assert open_store(f"file://{tmp_path / 'artifacts'}").active_version("ranker") == "000001"
    again = runner.invoke(app, ["models", "promote", "2", "--kind", "ranker"], env=env)
    assert again.exit_code == 0, again.output
    meta = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    assert meta.active_model("ranker").version == "000002"
    assert runner.invoke(app, ["models", "promote", "9", "--kind", "ranker"], env=env).exit_code == 1
    assert runner.invoke(app, ["jobs", "list"], env=env).exit_code == 0
    skipped = runner.invoke(app, ["drift", "run"], env=env)
    assert skipped.exit_code == 0 and "skipped" in skipped.output
    assert meta.jobs("drift")[0].outcome == "skipped"
