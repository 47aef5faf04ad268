"""Progress bars for terminals only: to a log file or a pipe a bar writes kilobytes of fragments per epoch,
where the library's one log line per epoch (or stage) says what a reader needs."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm


def progress_bar(iterable: Iterable, desc: str, enabled: bool = True) -> Iterable:
    """``iterable`` with a tqdm bar on standard error when ``enabled`` and standard error is a terminal."""
    shown = enabled and sys.stderr.isatty()
    return tqdm(iterable, desc=desc, disable=not shown, leave=False, dynamic_ncols=True)
