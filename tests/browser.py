"""What the browser tests share: the system's Chromium (no browser is downloaded; scripts/ensure_chromium.sh
installs Debian's), playwright when it is installed, and screenshots kept in $HUMPBACK_SCREENSHOTS when
that is set, to look at them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Headless in a container: no sandbox, no GPU, no /dev/shm.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def chromium() -> str | None:
    """The system Chromium's path, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def playwright():
    """playwright's ``sync_playwright``, or None when it is not installed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    return sync_playwright


def keep_screenshot(path: Path) -> None:
    """Copy a screenshot into $HUMPBACK_SCREENSHOTS when that is set."""
    if os.environ.get("HUMPBACK_SCREENSHOTS"):
        out = Path(os.environ["HUMPBACK_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / path.name)
