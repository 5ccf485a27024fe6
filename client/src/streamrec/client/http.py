"""HTTP client of the feed API: feeds, similar items and the write endpoints, with timeouts and retries."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from streamrec.client.events import Feed, Interaction, ItemUpsert, UserUpsert

RETRY_STATUS = frozenset({429, 502, 503, 504})


class ApiError(RuntimeError):
    """The API refused a request (4xx) or kept failing (5xx, timeouts) after every retry."""

    def __init__(self, status: int | None, detail: Any, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: {status or 'no response'}: {detail}")
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class SimilarItem:
    item_id: str
    score: float
    source: str


@dataclass(frozen=True)
class Similar:
    item_id: str
    items: list[SimilarItem]
    degraded: bool = False


class StreamrecClient:
    """The feed API at ``base_url`` (e.g. ``http://127.0.0.1:8080``).

    Each attempt is bounded by ``timeout_s``. A connection error, a timeout, a 429 or a 502/503/504 is
    retried up to ``retries`` times with exponential backoff and jitter (a ``Retry-After`` is honoured,
    capped at ``max_backoff_s``). That is safe for every call here: reads have no effect, PUTs replace,
    and the platform applies each interaction's ``event_id`` once. Records are validated against the
    platform's schemas before anything is sent (:class:`InvalidEvent`).
    """

    def __init__(self, base_url: str, *, timeout_s: float = 5.0, retries: int = 3, backoff_s: float = 0.2,
                 max_backoff_s: float = 5.0, headers: Mapping[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self._sleep = sleep
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, headers=dict(headers or {}),
                                  transport=transport)

    def feed(self, user_id: str, n: int | None = None, **context: str) -> Feed:
        """The user's feed; keyword arguments are request context (e.g. ``device="ios"``)."""
        params = {**context, **({"n": str(n)} if n is not None else {})}
        return Feed.parse(self._call("GET", f"/v1/feed/{_segment(user_id)}", params=params))

    def similar(self, item_id: str, n: int = 10) -> Similar:
        data = self._call("GET", f"/v1/items/{_segment(item_id)}/similar", params={"n": str(n)})
        items = [SimilarItem(**it) for it in data["items"]]
        return Similar(data["item_id"], items, bool(data.get("degraded", False)))

    def send_events(self, events: Sequence[Interaction]) -> int:
        """POST /v1/events; the whole batch is validated first. Returns the number accepted."""
        return self._write("POST", "/v1/events", [ev.encode() for ev in events])

    def put_item(self, item: ItemUpsert) -> None:
        if "/" in item.item_id:  # no path route matches an encoded '/': the batch route takes it
            self.put_items([item])
            return
        self._write("PUT", f"/v1/items/{_segment(item.item_id)}", item.encode())

    def put_items(self, items: Sequence[ItemUpsert]) -> int:
        return self._write("PUT", "/v1/items", [it.encode() for it in items])

    def put_user(self, user: UserUpsert) -> None:
        if "/" in user.user_id:
            self.put_users([user])
            return
        self._write("PUT", f"/v1/users/{_segment(user.user_id)}", user.encode())

    def put_users(self, users: Sequence[UserUpsert]) -> int:
        return self._write("PUT", "/v1/users", [u.encode() for u in users])

    def _write(self, method: str, path: str, body: bytes | list[bytes]) -> int:
        content = body if isinstance(body, bytes) else b"[" + b",".join(body) + b"]"
        data = self._call(method, path, content=content, headers={"content-type": "application/json"})
        return int(data.get("accepted", 1))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                resp = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise ApiError(None, repr(exc), method, path) from exc
                self._sleep(self._delay(attempt, None))
                continue
            if resp.status_code in RETRY_STATUS and not last:
                self._sleep(self._delay(attempt, resp.headers.get("retry-after")))
                continue
            if resp.status_code >= 400:
                raise ApiError(resp.status_code, _detail(resp), method, path)
            return resp.json()
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None and retry_after.replace(".", "", 1).isdigit():
            return min(float(retry_after), self.max_backoff_s)
        return float(min(self.backoff_s * 2.0**attempt, self.max_backoff_s)) * (0.5 + random.random() / 2)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StreamrecClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _segment(value: str) -> str:
    """``value`` as one path segment (ids may hold '/', '?', spaces...)."""
    return quote(value, safe="")


def _detail(resp: httpx.Response) -> Any:
    try:
        return resp.json().get("detail", resp.text)
    except ValueError:
        return resp.text
