"""Retry a call with exponential backoff; give up with a :class:`StartupError` naming the target."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from core.errors import StartupError

T = TypeVar("T")


def backoff_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """``base_s * 2**attempt``, at most ``cap_s`` (attempt 0 waits ``base_s``)."""
    return float(min(cap_s, base_s * 2 ** min(attempt, 32)))


def retry(what: str, fn: Callable[[], T], attempts: int, delay_s: float = 0.5, max_delay_s: float = 8.0) -> T:
    """Call ``fn`` up to ``attempts`` times (at least once), sleeping ``delay_s``, ``2*delay_s``, ...
    (at most ``max_delay_s``) between failures; then raise StartupError naming ``what``.

    >>> retry("the answer", lambda: 42, attempts=3)
    42
    """
    last: Exception | None = None
    tries = max(1, attempts)
    for i in range(tries):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - re-raised below with context
            last = exc
            if i + 1 < tries:
                time.sleep(backoff_delay(i, delay_s, max_delay_s))
    raise StartupError(f"{what} unreachable after {tries} attempts: {last}") from last
