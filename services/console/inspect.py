"""The feed inspector: one user as serving sees them, and their feed explained.

* the user: recent history (with the items' catalogue rows), seen count, segment, attributes, and the
  Feast user row, read exactly as a feed request reads them (``funnel.reads.read_user``);
* the last feed this API process served them (its in-process cache), as served: every item's source,
  per-head scores, retrieval signals, rules, explore flag and propensity are on the feed itself;
* their feed now: computed by this process's pipeline (same models, experiments and settings as
  ``GET /v1/feed``), with the opt-in record of the candidates retrieval dropped and why
  (``funnel.retrieval.why_filtered``). It is not logged as an impression and not cached as served.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from core.errors import StoreUnavailable
from core.events import Feed
from core.online import ItemInfo, UserState
from funnel import reads
from funnel.fallback import FeedCache
from funnel.pipeline import FeedResult, Pipeline
from funnel.retrieval import why_filtered

HISTORY_SHOWN = 30
FILTERED_SHOWN = 200
CONSOLE_TRIGGER = "console"


@dataclass
class Filtered:
    item_id: str
    reason: str
    source: str


@dataclass
class Inspection:
    user_id: str
    context: dict[str, str]
    user: UserState | None = None
    row: dict[str, Any] = field(default_factory=dict)
    row_ok: bool = True
    history: list[tuple[str, ItemInfo | None]] = field(default_factory=list)
    served: Feed | None = None  # the last feed this process served the user
    now: FeedResult | None = None  # the feed computed for this page
    filtered: list[Filtered] = field(default_factory=list)
    filtered_total: int = 0
    error: str = ""
    took_ms: float = 0.0


def inspect(pipeline: Pipeline, user_id: str, context: dict[str, str], n: int) -> Inspection:
    t0 = time.perf_counter()
    out = Inspection(user_id, context, served=pipeline.cache.get(user_id))
    try:
        ur = reads.read_user(pipeline.state, user_id, pipeline.reader)
        out.user, out.row, out.row_ok = ur.user, dict(ur.row), ur.row_ok
        recent = ur.user.recent[:HISTORY_SHOWN]
        out.history = list(zip(recent, pipeline.state.items(recent), strict=True))
    except StoreUnavailable as exc:
        out.error = f"the online store is unavailable: {exc}"
    out.now, why = _feed_now(pipeline, user_id, context, n)
    ranked = sorted(why.items(), key=lambda kv: (kv[1][0], kv[0]))
    out.filtered = [Filtered(i, r, s) for i, (r, s) in ranked[:FILTERED_SHOWN]]
    out.filtered_total = len(why)
    out.took_ms = (time.perf_counter() - t0) * 1e3
    return out


def _feed_now(pipeline: Pipeline, user_id: str, context: dict[str, str],
              n: int) -> tuple[FeedResult, dict[str, tuple[str, str]]]:
    """The pipeline's feed for the user now, through a sibling whose fallback cache is its own (so the
    page never shows up as the feed served), routed through the same experiments."""
    probe = pipeline.variant(pipeline.settings)
    probe.cache = FeedCache(capacity=8)
    probe.experiments = pipeline.experiments
    with why_filtered() as why:
        result = probe.feed(user_id, n, context, trigger=CONSOLE_TRIGGER)
    return result, dict(why)


def explanation(feed: Feed) -> list[dict[str, Any]]:
    """Per item, what the inspector shows (and what a test compares with the API's feed)."""
    return [{"rank": it.rank, "item_id": it.item_id, "source": it.source, "score": it.score,
             "explore": it.explore, "propensity": it.propensity, "rules": list(it.rules), "team": it.team,
             "heads": {k: v for k, v in it.scores.items() if not k.startswith("retrieval_")},
             "signals": {k.removeprefix("retrieval_"): v for k, v in it.scores.items()
                         if k.startswith("retrieval_")}}
            for it in feed.items]


def parse_context(text: str) -> dict[str, str]:
    """``device=mobile&country=fr`` (or comma separated) -> a request context."""
    pairs = [p.strip() for p in text.replace(",", "&").split("&") if p.strip()]
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"context entry {pair!r} is not key=value")
        out[key.strip()] = value.strip()
    return out
