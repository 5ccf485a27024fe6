"""Rows of a CSV or Parquet file as the platform's input records, checked as the worker checks them.

Columns are the record's fields. Empty cells are left out (the field's default applies). Nested
fields take either a JSON column (``attributes``, ``context``) or one column per key
(``attributes.colour``, ``context.device``); ``categories`` is a JSON list or ``a|b|c``; Parquet
timestamps and dates become unix seconds (naive ones read as UTC). An interaction without
``event_id`` gets one derived from its row, so importing a file twice applies it once.

Each row becomes :class:`Good` (the encoded record and its key) or :class:`Bad` (the worker's
reason and detail, with the row number). Validation is the worker's own decoder over the row's JSON
(core.events decode_*) plus its skew check (check_times): a row the importer accepts is one the
worker applies.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.events import (
    EventError,
    Interaction,
    ItemUpsert,
    UserUpsert,
    check_times,
    decode_interaction,
    decode_item,
    decode_user,
    encode,
)
from core.topics import INTERACTIONS, ITEMS, USERS

Kind = Literal["interactions", "items", "users"]
KINDS: tuple[Kind, ...] = (INTERACTIONS, ITEMS, USERS)  # type: ignore[assignment]
Format = Literal["csv", "parquet"]
DECODERS: dict[str, Callable[[bytes], Interaction | ItemUpsert | UserUpsert]] = {
    INTERACTIONS: decode_interaction, ITEMS: decode_item, USERS: decode_user}
KEY_FIELD = {INTERACTIONS: "user_id", ITEMS: "item_id", USERS: "user_id"}  # what each topic is keyed by
NESTED = ("attributes", "context")
PARQUET_BATCH = 4096


class UnreadableFile(ValueError):
    """The file cannot be imported at all (unknown format, no header, kind not recognised)."""


@dataclass(frozen=True)
class Row:
    number: int  # 1 = the first data row (a CSV header is not counted)
    data: dict[str, Any]
    line: int | None = None  # CSV: the line the row ends on


@dataclass(frozen=True)
class Good:
    row: Row
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Bad:
    row: Row
    key: bytes | None
    raw: bytes  # the row as read, as JSON (what the dead letter carries as ``original``)
    error: EventError


def file_format(path: Path, fmt: str | None) -> Format:
    name = (fmt or path.suffix.lstrip(".")).lower()
    if name in ("csv", "parquet", "pq"):
        return "parquet" if name == "pq" else name  # type: ignore[return-value]
    raise UnreadableFile(f"cannot tell the format of {path.name}: pass --format csv or --format parquet")


def columns(path: Path, fmt: Format) -> list[str]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    with path.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise UnreadableFile(f"{path.name} has no header row")
    return header


def detect_kind(cols: list[str]) -> Kind:
    """interactions (user_id, item_id, type), items (item_id, no user_id) or users (user_id, no item_id)."""
    have = {c.split(".", 1)[0] for c in cols}
    if {"user_id", "item_id", "type"} <= have:
        return "interactions"
    if "item_id" in have and "user_id" not in have:
        return "items"
    if "user_id" in have and "item_id" not in have:
        return "users"
    raise UnreadableFile(f"cannot tell interactions, items or users from the columns {sorted(have)}: "
                       "pass --kind")


def count_rows(path: Path, fmt: Format) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as fh:
        return max(0, sum(1 for _ in fh) - 1)


def read_rows(path: Path, fmt: Format) -> Iterator[Row]:
    if fmt == "parquet":
        yield from _parquet_rows(path)
        return
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for number, data in enumerate(reader, start=1):
            yield Row(number, dict(data), reader.line_num)


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH):
        for data in batch.to_pylist():
            number += 1
            yield Row(number, data)


def check(kind: Kind, row: Row, now: float, max_future_s: float, max_past_s: float) -> Good | Bad:
    """The row as the worker would take it (Good) or dead-letter it (Bad, the detail naming the row)."""
    raw = json.dumps(row.data, default=_plain).encode()
    key = row.data.get(KEY_FIELD[kind])
    key_bytes = str(key).encode() if key not in (None, "") else None
    try:
        record = DECODERS[kind](json.dumps(normalise(kind, row.data), default=_plain).encode())
        check_times(record, now, max_future_s, max_past_s)
    except EventError as exc:
        where = f"row {row.number}" + (f" (line {row.line})" if row.line is not None else "")
        return Bad(row, key_bytes, raw, EventError(exc.reason, f"{where}: {exc.detail}"))
    return Good(row, getattr(record, KEY_FIELD[kind]).encode(), encode(record))


def normalise(kind: Kind, data: dict[str, Any]) -> dict[str, Any]:
    """The row's cells as a record object (see the module doc); raises EventError for a bad cell."""
    out = {k: _value(v) for k, v in data.items() if v is not None and v != ""}
    for group in NESTED:
        nested = _json_object(group, out.pop(group, {}))
        for col in [c for c in out if c.startswith(f"{group}.")]:
            nested[col.split(".", 1)[1]] = out.pop(col)
        if nested:
            out[group] = nested
    if isinstance(out.get("categories"), str):
        text = out["categories"].strip()
        out["categories"] = _json(text, "categories") if text.startswith("[") else text.split("|")
    if kind == INTERACTIONS and "event_id" not in out:
        digest = hashlib.sha1(json.dumps(data, sort_keys=True, default=_plain).encode()).hexdigest()
        out["event_id"] = f"imp-{digest[:24]}"
    return out


def _value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC).timestamp()
    return v


def _json_object(field: str, value: Any) -> dict[str, Any]:
    parsed = _json(value, field) if isinstance(value, str) else value
    if isinstance(parsed, list):  # Parquet map columns arrive as [(key, value), ...]
        parsed = dict(parsed)
    if not isinstance(parsed, dict):
        raise EventError("invalid_field", f"{field}: not a JSON object: {str(value)[:80]!r}")
    return dict(parsed)


def _json(text: str, field: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError("invalid_field", f"{field}: not JSON ({exc})") from None


def _plain(value: Any) -> Any:
    """JSON for what a Parquet row may hold beyond JSON's types."""
    converted = _value(value)
    if converted is not value:
        return converted
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
