"""Headless Chromium (Debian's package) driven by Playwright, for the tests of the HTML pages the toolkit writes.

``open_page`` loads a file in a 1,400 x 900 window with every request outside the file system refused and
recorded, and every console error and uncaught exception recorded: the pages must work offline, so a
test asserts both lists are empty.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

WIDTH, HEIGHT = 1400, 900
# The flags the machine's own probe used: without the background-networking ones Chromium keeps calling home.
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str:
    """The Chromium to drive; skips the test (fails it under MIXCOLLAPSE_REQUIRE_REAL=1) where there is none."""
    why = None
    try:
        import playwright  # noqa: F401
    except ImportError:
        why = "no Playwright: pip install -e '.[test]'"
    found = os.environ.get("MIXCOLLAPSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        why = "no Chromium: apt-get install chromium (or set MIXCOLLAPSE_CHROMIUM to a Chrome/Chromium binary)"
    if why is not None:
        if os.environ.get("MIXCOLLAPSE_REQUIRE_REAL") == "1":
            pytest.fail(f"MIXCOLLAPSE_REQUIRE_REAL=1 but {why}")
        pytest.skip(why)
    return found


@dataclass
class Loaded:
    page: object  # playwright's Page
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    requests: list[str] = field(default_factory=list)  # every URL the page asked for, its own included
    refused: list[str] = field(default_factory=list)  # those outside the file system, refused

    def horizontal_overflow(self) -> int:
        """How many pixels the page is wider than the window (0: no horizontal scrollbar)."""
        return self.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")

    def pixels(self, selector: str) -> np.ndarray:
        """A screenshot of the first element matching ``selector``, scrolled into view: (H, W, 3) uint8."""
        from PIL import Image

        element = self.page.locator(selector).first
        element.scroll_into_view_if_needed()
        return np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGB"))


def drawn(rgb: np.ndarray) -> tuple[float, int]:
    """The share of pixels that are not background (near white) and the number of distinct colours."""
    ink = (rgb < 235).any(axis=2)
    return float(ink.mean()), len(np.unique(rgb.reshape(-1, 3), axis=0))


def hues(rgb: np.ndarray) -> dict[str, float]:
    """The share of clearly green pixels and of clearly purple, red or orange ones (the two colour maps)."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return {"green": float(((g > r + 40) & (g > b + 20)).mean()), "warm": float(((r > g + 40) | (b > g + 60)).mean())}


@contextmanager
def open_page(path: Path) -> Iterator[Loaded]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=list(FLAGS))
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            loaded = Loaded(page)
            page.on("console", lambda m: loaded.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: loaded.errors.append(str(e)))
            page.on("request", lambda r: loaded.requests.append(r.url))

            def offline(route) -> None:
                if route.request.url.startswith(("file:", "data:", "blob:")):
                    route.continue_()
                else:
                    loaded.refused.append(route.request.url)
                    route.abort()

            page.route("**/*", offline)
            page.goto(Path(path).resolve().as_uri())
            page.wait_for_load_state("networkidle")
            yield loaded
        finally:
            browser.close()
