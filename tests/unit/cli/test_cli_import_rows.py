"""Rows of CSV and Parquet files become the worker's records, or dead-letter material with the
worker's reason and the row number; the kind is told from the columns."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.events import decode_interaction, decode_item, decode_user
from services.cli.import_rows import (
    Bad,
    Good,
    Row,
    UnreadableFile,
    check,
    columns,
    count_rows,
    detect_kind,
    file_format,
    read_rows,
)

SKEW = (300.0, 30 * 86400.0)


def _check(kind, data: dict, number: int = 1):
    return check(kind, Row(number, data), time.time(), *SKEW)


def test_kind_from_columns():
    assert detect_kind(["user_id", "item_id", "type", "timestamp"]) == "interactions"
    assert detect_kind(["item_id", "title", "created_at", "attributes.colour"]) == "items"
    assert detect_kind(["user_id", "segment", "attributes.age"]) == "users"
    with pytest.raises(UnreadableFile, match="--kind"):
        detect_kind(["user_id", "item_id"])
    with pytest.raises(UnreadableFile, match="--format"):
        file_format(Path("x.json"), None)
    assert file_format(Path("x.PQ"), None) == "parquet" and file_format(Path("x.txt"), "csv") == "csv"


def test_csv_cells_become_an_item_with_nested_fields(tmp_path: Path):
    path = tmp_path / "items.csv"
    path.write_text('item_id,title,categories,attributes.colour,attributes,created_at,active\n'
                    'i1,"Hello, world",jazz|rock,red,"{""price"": 9.5}",1700000000,false\n'
                    'i2,,["news"],,,1700000001.5,\n')
    assert columns(path, "csv")[0] == "item_id" and count_rows(path, "csv") == 2
    rows = list(read_rows(path, "csv"))
    assert [(r.number, r.line) for r in rows] == [(1, 2), (2, 3)]
    first, second = (_check("items", r.data, r.number) for r in rows)
    assert isinstance(first, Good) and isinstance(second, Good) and first.key == b"i1"
    item = decode_item(first.value)
    assert (item.title, item.categories, item.active) == ("Hello, world", ["jazz", "rock"], False)
    assert item.attributes == {"colour": "red", "price": 9.5} and item.created_at == 1.7e9
    assert decode_item(second.value).categories == ["news"] and decode_item(second.value).title == ""


def test_bad_rows_carry_the_workers_reason_and_their_row_number():
    now = time.time()
    cases = [
        ("items", {"item_id": "i1", "title": "no created_at"}, "missing_field"),
        ("items", {"item_id": "i1", "created_at": now + 86400}, "future_created_at"),
        ("items", {"item_id": "i1", "created_at": float("nan")}, "non_finite"),
        ("items", {"item_id": "i1", "created_at": "soon"}, "invalid_field"),
        ("items", {"item_id": "i1", "created_at": 1.7e9, "attributes": "{oops"}, "invalid_field"),
        ("interactions", {"user_id": "u", "item_id": "i", "type": "teleport", "timestamp": now},
         "unknown_type"),
        ("interactions", {"user_id": "u", "item_id": "i", "type": "click", "timestamp": now - 90 * 86400},
         "stale_timestamp"),
        ("users", {"user_id": "u1", "nickname": "x"}, "unknown_field"),
    ]
    for number, (kind, data, reason) in enumerate(cases, start=4):
        result = _check(kind, data, number)
        assert isinstance(result, Bad), (kind, data)
        assert result.error.reason == reason, (data, result.error)
        assert result.error.detail.startswith(f"row {number}: ")
        assert json.loads(result.raw) == json.loads(json.dumps(data))  # the row as read
    assert _check("users", {"user_id": "u1", "nickname": "x"}).key == b"u1"
    assert _check("items", {"title": "no id", "created_at": 1.7e9}).key is None


def test_interactions_get_a_stable_event_id_and_are_keyed_by_user():
    data = {"user_id": "u1", "item_id": "i1", "type": "click", "timestamp": str(time.time()),
            "context.device": "ios"}
    first, again = _check("interactions", data), _check("interactions", dict(data))
    assert isinstance(first, Good) and isinstance(again, Good) and first.key == b"u1"
    ev = decode_interaction(first.value)
    assert ev.event_id == decode_interaction(again.value).event_id and ev.context == {"device": "ios"}
    other = _check("interactions", {**data, "item_id": "i2"})
    assert isinstance(other, Good) and decode_interaction(other.value).event_id != ev.event_id
    given = _check("interactions", {**data, "event_id": "mine"})
    assert isinstance(given, Good) and decode_interaction(given.value).event_id == "mine"


def test_parquet_rows_with_timestamps_lists_and_maps(tmp_path: Path):
    created = dt.datetime(2024, 5, 1, 12, 0, 0)
    table = pa.table({
        "user_id": ["u1", "u2", "u3"],
        "segment": ["new", None, "vip"],
        "attributes": pa.array([[("age", "31")], [], [("age", "40")]], pa.map_(pa.string(), pa.string())),
        "timestamp": pa.array([created, created, dt.datetime(2100, 1, 1)], pa.timestamp("s")),
    })
    path = tmp_path / "users.parquet"
    pq.write_table(table, path)
    assert detect_kind(columns(path, "parquet")) == "users" and count_rows(path, "parquet") == 3
    results = [check("users", r, created.replace(tzinfo=dt.UTC).timestamp(), *SKEW)
               for r in read_rows(path, "parquet")]
    assert [type(r).__name__ for r in results] == ["Good", "Good", "Bad"]
    user = decode_user(results[0].value)  # type: ignore[union-attr]
    assert user.attributes == {"age": "31"} and user.segment == "new"
    assert user.timestamp == created.replace(tzinfo=dt.UTC).timestamp()
    assert results[2].error.reason == "future_timestamp"  # type: ignore[union-attr]
    assert results[2].error.detail.startswith("row 3: ")  # type: ignore[union-attr]


def test_cli_dry_run_reports_bad_rows_and_exit_codes(tmp_path: Path):
    from typer.testing import CliRunner

    from services.cli.main import app

    path = tmp_path / "items.csv"
    path.write_text("item_id,created_at\ni1,1700000000\ni2,\n")
    runner = CliRunner()
    done = runner.invoke(app, ["import", str(path), "--dry-run"])
    assert done.exit_code == 1 and "row 2 (line 3): created_at" in done.output
    assert "[missing_field]" in done.output and "would import 1 items" in done.output
    path.write_text("item_id,created_at\ni1,1700000000\n")
    assert runner.invoke(app, ["import", str(path), "--dry-run"]).exit_code == 0
    assert runner.invoke(app, ["import", str(path), "--dry-run", "--kind", "things"]).exit_code == 2
    odd = tmp_path / "both.csv"
    odd.write_text("user_id,item_id\nu1,i1\n")
    done = runner.invoke(app, ["import", str(odd), "--dry-run"])
    assert done.exit_code == 2 and "--kind" in done.output
