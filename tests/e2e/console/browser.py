"""Playwright over Debian's Chromium (``make browser`` installs it, ``.ci/run`` calls it): Playwright
never downloads a browser of its own here. Headless, sandbox off (root in CI), no background network.
Without Chromium the browser tests skip, except where ``STREAMREC_REQUIRE_BROWSER=1`` (CI): there a
missing browser is a failure, not a silent skip."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("STREAMREC_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None (where the browser is required: never)."""
    if required() or CHROMIUM.exists() or shutil.which("chromium") is not None:
        return None
    return f"no Chromium at {CHROMIUM}: run `make browser` (apt-get install chromium)"


def required() -> bool:
    return os.environ.get("STREAMREC_REQUIRE_BROWSER", "") == "1"


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    executable = CHROMIUM if CHROMIUM.exists() else Path(shutil.which("chromium") or CHROMIUM)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(executable), headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page that records console errors and warnings, failed requests, HTTP errors (a missing
    favicon included) and uncaught exceptions."""

    def __init__(self, b: Any) -> None:
        self.page = b.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))
        self.page.on("response", lambda r: self.errors.append(f"HTTP {r.status}: {r.url}")
                     if r.status >= 400 else None)
        self.page.on("dialog", lambda d: d.accept())

    def open(self, url: str) -> int:
        response = self.page.goto(url, wait_until="load")
        assert response is not None, url
        return int(response.status)

    def load_ms(self) -> float:
        """Navigation start to the load event of the current page (the browser's own timing)."""
        return float(self.page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0];"
            " return n.loadEventEnd - n.startTime; }"))
