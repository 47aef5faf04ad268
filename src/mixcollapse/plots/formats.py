"""Which files a figure is written as: PNG by default, PDF too when asked (``--pdf``, or ``figure_formats``).

PNG is what a reader opens and what the HTML report embeds; PDF (vector, for papers) takes longer to
write than the PNG, so it is written only when asked. Light on purpose (no matplotlib): the command
line sets the formats before anything is drawn.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

FORMATS = ("png", "pdf", "svg")  # what save_figure can write
DEFAULT_FORMATS = ("png",)
_current: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("figure_formats", default=DEFAULT_FORMATS)


def current_formats() -> tuple[str, ...]:
    """The formats figures are written in here (``DEFAULT_FORMATS`` unless inside ``figure_formats``)."""
    return _current.get()


@contextlib.contextmanager
def figure_formats(*formats: str) -> Iterator[tuple[str, ...]]:
    """Within the block, every figure is written in ``formats`` (e.g. ``figure_formats("png", "pdf")``)."""
    chosen = check_formats(formats)
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """``formats`` as a tuple without repeats; ValueError naming the known ones for an unknown or empty list."""
    chosen = tuple(dict.fromkeys(f.lower().lstrip(".") for f in formats))
    unknown = [f for f in chosen if f not in FORMATS]
    if not chosen or unknown:
        raise ValueError(
            f"unknown figure format {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(FORMATS)}"
        )
    return chosen
