"""``streamrec features apply | materialize | show user U | show item I`` end to end (SQLite registry)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.events import Interaction, ItemUpsert
from core.settings import load_settings
from core.topics import INTERACTIONS, ITEMS
from feature_store.archive import ParquetArchive
from feature_store.config import feature_store
from feature_store.repository import teardown
from services.cli.features import app

pytestmark = pytest.mark.integration


def test_apply_materialize_show(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch):
    project = f"f{uuid.uuid4().hex[:10]}"
    for key, value in {"DATA_DIR": str(tmp_path), "REDIS__URL": redis_url, "FEAST__PROJECT": project}.items():
        monkeypatch.setenv(f"STREAMREC_{key}", value)
    monkeypatch.delenv("STREAMREC_CONFIG", raising=False)
    now = time.time() - 60
    archive = ParquetArchive.from_settings(load_settings())
    archive.append(ITEMS, [ItemUpsert(item_id="i1", title="t", categories=["jazz"], created_at=now - 9,
                                      timestamp=now - 5).model_dump()])
    archive.append(INTERACTIONS, [Interaction(event_id="e1", user_id="u1", item_id="i1", type="click",
                                              timestamp=now).model_dump()])
    runner = CliRunner()
    try:
        assert runner.invoke(app, ["apply"]).exit_code == 0
        done = runner.invoke(app, ["materialize"])
        assert done.exit_code == 0, done.output
        user = runner.invoke(app, ["show", "user", "u1"])
        assert json.loads(user.output[user.output.index("{"):])["lifetime_events"] == 1
        item = runner.invoke(app, ["show", "item", "i1"])
        assert json.loads(item.output[item.output.index("{"):])["categories"] == ["jazz"]
    finally:
        teardown(feature_store(load_settings()))
