"""Progress bars only on a terminal: a log file or a pipe gets the one line per epoch and stage instead."""

import io
import sys

from mixcollapse.progress import progress_bar


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_a_bar_on_a_terminal_and_none_elsewhere(monkeypatch):
    for tty, enabled, shown in ((True, True, True), (True, False, False), (False, True, False)):
        stream = _Stream(tty)
        monkeypatch.setattr(sys, "stderr", stream)
        items = list(progress_bar(range(50), "epoch 1", enabled))
        assert items == list(range(50))
        assert ("epoch 1" in stream.getvalue()) == shown, (tty, enabled)
