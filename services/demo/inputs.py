"""Reading interactions from JSONL or CSV files for ``streamrec produce``.

Each line becomes an :class:`Interaction` or an :class:`InvalidLine` naming the line and why.
CSV needs a header; ``context.<key>`` columns (or a JSON ``context`` column) fill the context.
A missing ``event_id`` is derived from the line's content (re-producing a file stays idempotent);
a missing ``timestamp`` is the time of reading.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.events import Interaction


@dataclass(frozen=True)
class InvalidLine:
    line: int
    reason: str


def _normalise(row: dict[str, Any], raw: str, now: float) -> dict[str, Any]:
    data = {k: v for k, v in row.items() if v not in ("", None)}
    ctx = data.pop("context", {}) or {}
    if isinstance(ctx, str):
        ctx = json.loads(ctx)
    for key in [k for k in data if k.startswith("context.")]:
        ctx[key.removeprefix("context.")] = str(data.pop(key))
    data["context"] = {str(k): str(v) for k, v in dict(ctx).items()}
    data.setdefault("event_id", "f-" + hashlib.sha1(raw.encode()).hexdigest()[:20])
    data.setdefault("timestamp", now)
    return data


def _parse(row: Any, raw: str, lineno: int, now: float) -> Interaction | InvalidLine:
    if not isinstance(row, dict):
        return InvalidLine(lineno, "not a JSON object")
    try:
        return Interaction.model_validate(_normalise(row, raw, now))
    except ValidationError as exc:
        first = exc.errors()[0]
        return InvalidLine(lineno, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
    except (ValueError, TypeError) as exc:
        return InvalidLine(lineno, f"bad context: {exc}")


def read_jsonl(text: Iterator[str], now: float) -> Iterator[Interaction | InvalidLine]:
    for lineno, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield InvalidLine(lineno, f"not JSON: {exc.msg}")
            continue
        yield _parse(row, line, lineno, now)


def read_csv(text: Iterator[str], now: float) -> Iterator[Interaction | InvalidLine]:
    reader = csv.DictReader(text)
    for row in reader:
        lineno = reader.line_num
        if None in row:
            yield InvalidLine(lineno, "more fields than the header")
            continue
        buf = io.StringIO()
        csv.writer(buf).writerow(row.values())
        yield _parse(dict(row), buf.getvalue(), lineno, now)


def read_interactions(path: Path, fmt: str | None = None) -> Iterator[Interaction | InvalidLine]:
    """Interactions (or invalid lines) from ``path``; ``fmt`` is ``jsonl``/``csv`` or from the suffix."""
    kind = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    now = time.time()
    with path.open(encoding="utf-8", newline="") as fh:
        yield from (read_csv(fh, now) if kind == "csv" else read_jsonl(fh, now))


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)
