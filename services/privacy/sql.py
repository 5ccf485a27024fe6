"""A user leaves the SQL stores. None of their tables has a user column: the control plane keeps
tenants, API keys (a tenant's, named by an operator) and deletion requests (the subject's SHA-256
only, ``services.metadata.access``); the lifecycle registry keeps job runs, model and index versions
and drift reports (``services.metadata.models``), whose figures are aggregates. Free text can still
name a user: a job's error is an exception's message, its details what the job chose to record, and
the reasons of a model, an index or a drift report are text. The eraser replaces the user's id there,
as a whole token (not inside a longer id), with ``ERASED``, in the tenant's registry and in the control
database; everything else in those rows stays.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, Text, cast, inspect, or_, select, update
from sqlalchemy.engine import Connection

import services.metadata.access  # noqa: F401 - registers the control-plane tables on Base
from services.metadata.models import Base
from services.metadata.store import MetadataStore

ERASED = "<erased>"
FREE_TEXT = {  # table -> its columns of free text or JSON that a person's id could end up in
    "job_runs": ("error", "details"),
    "model_versions": ("reason", "metrics", "baseline_metrics"),
    "index_versions": ("reason",),
    "drift_reports": ("reasons", "metrics"),
}


def scrub_user(urls: Iterable[str], user_id: str) -> int:
    """Replace ``user_id`` in the free-text cells of every database of ``urls``; returns the cells
    changed."""
    token = re.compile(rf"(?<![\w.@-]){re.escape(user_id)}(?![\w.@-])")
    changed = 0
    for url in dict.fromkeys(urls):
        store = MetadataStore(url, migrate=False)
        try:
            with store.engine.begin() as conn:
                present = set(inspect(conn).get_table_names())
                for name in FREE_TEXT.keys() & present:
                    changed += _scrub_table(conn, Base.metadata.tables[name], user_id, token)
        finally:
            store.close()
    return changed


def _scrub_table(conn: Connection, table: Table, user_id: str, token: re.Pattern[str]) -> int:
    changed = 0
    escaped = json.dumps(user_id)[1:-1]  # as a JSON column stores it (non-ASCII as \\u escapes)
    for name in FREE_TEXT[table.name]:
        column = cast(table.c[name], Text)
        hits = conn.execute(select(table.c.id, table.c[name]).where(
            or_(*(column.like(f"%{_like(s)}%", escape="\\") for s in {user_id, escaped})))).all()
        for row_id, value in hits:
            new = _redact(value, token)
            if new != value:
                conn.execute(update(table).where(table.c.id == row_id).values({name: new}))
                changed += 1
    return changed


def _redact(value: Any, token: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return token.sub(ERASED, value)
    if isinstance(value, dict):
        return {_redact(k, token): _redact(v, token) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, token) for v in value]
    return value


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
