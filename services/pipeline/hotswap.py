"""Polls the artifact store for newer ranker / index / two-tower versions and swaps them in.

Each kind has a LIFECYCLE ``Loader`` (loads only newer versions, verifies checksums, keeps the last
good one). After a poll the parts are swapped into the :class:`ModelSlot` in one assignment, so a
request in flight keeps the snapshot it started with. ``missing`` names kinds that are promoted
in the store but have no loaded value (load failed): the feed then says ``degraded``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from funnel.modelset import ModelSlot

log = logging.getLogger(__name__)
FIELD = {"ranker": "ranker", "index": "index", "two_tower": "user_tower", "i2i": "neighbours"}


class HotSwapper:
    def __init__(self, slot: ModelSlot, loaders: dict[str, Any],
                 on_swap: Callable[[], None] | None = None) -> None:
        self.slot, self.loaders, self.on_swap = slot, loaders, on_swap
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> bool:
        """One round over every kind. True when anything changed."""
        changed = False
        for kind, loader in self.loaders.items():
            try:
                changed |= bool(loader.poll())
            except Exception:  # noqa: BLE001 - the Loader keeps the last good value
                log.exception("polling %s failed", kind)
        missing = tuple(k for k, ld in self.loaders.items() if ld.value is None and self._promoted(ld))
        if changed or missing != self.slot.current.missing:
            parts = {FIELD[k]: ld.value for k, ld in self.loaders.items()}
            self.slot.swap(missing=missing, **parts)
        if changed and self.on_swap is not None:
            self.on_swap()
        return changed

    @staticmethod
    def _promoted(loader: Any) -> bool:
        try:
            return loader.store.latest_version(loader.kind) is not None
        except Exception:  # noqa: BLE001 - store unreachable: nothing known to be missing
            return False

    def start(self, interval_s: float) -> None:
        self.poll()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), name="hotswap", daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
