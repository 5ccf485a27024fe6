"""``GET /v1/users/{id}/export``: everything stored about one user, as JSON.

* ``online``: every Redis key of the user's (history, seen items, impressions, profile, feature
  state), read by type;
* ``feast``: the user's row in Feast's online store;
* ``archive``: every archived record naming the user (interactions, profile upserts);
* ``last_feed``: the last feed this process served the user (in-process fallback cache).

The feeds topic holds at most the user's last published feed (``last_feed`` is its content when this
process built it); the input topics hold the user's raw events until their retention ends.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from core.settings import Settings
from core.topics import INTERACTIONS, USERS
from feature_store.archive import ParquetArchive
from feature_store.online.keys import Keys

USER_FAMILIES: dict[str, Callable[[Keys, str], str]] = {
    "history": Keys.history, "seen": Keys.seen, "impressions": Keys.impressions,
    "profile": Keys.user, "features": Keys.user_features,
}


def export_user(settings: Settings, user_id: str, client: Any, feast_row: Callable[[str], Any] | None,
                last_feed: Any | None) -> dict[str, Any]:
    keys = Keys(settings.redis.key_prefix)
    online = {name: _read(client, key(keys, user_id)) for name, key in USER_FAMILIES.items()} \
        if client is not None else {}
    return {"user_id": user_id, "tenant": settings.tenancy.tenant,
            "online": {k: v for k, v in online.items() if v is not None},
            "feast": _feast(feast_row, user_id), "archive": archived(settings, user_id),
            "last_feed": last_feed}


def archived(settings: Settings, user_id: str) -> dict[str, list[dict[str, Any]]]:
    archive = ParquetArchive(settings.archive_dir)
    return {topic: [r for r in archive.iter_events(topic) if r.get("user_id") == user_id]
            for topic in (INTERACTIONS, USERS)}


def _feast(feast_row: Callable[[str], Any] | None, user_id: str) -> Any:
    if feast_row is None:
        return None
    try:
        row = feast_row(user_id)
    except Exception as exc:  # noqa: BLE001 - Feast unreachable: say so in the export
        return {"error": f"{type(exc).__name__}: {exc}"}
    return json.loads(json.dumps(row, default=str))


def _read(client: Any, key: str) -> Any:
    kind = _text(client.type(key))
    readers: dict[str, Callable[[], Any]] = {
        "string": lambda: _text(client.get(key)),
        "hash": lambda: {_text(k): _text(v) for k, v in client.hgetall(key).items()},
        "list": lambda: [_text(v) for v in client.lrange(key, 0, -1)],
        "set": lambda: sorted(_text(v) for v in client.smembers(key)),
        "zset": lambda: [[_text(m), s] for m, s in client.zrange(key, 0, -1, withscores=True)],
    }
    return readers[kind]() if kind in readers else None


def _text(value: Any) -> Any:
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode()}
