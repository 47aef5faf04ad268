"""Stopping a training cleanly: SIGINT, SIGTERM and the USR signals become one exception.

A training interrupted by Ctrl-C (SIGINT), by ``kill`` or a scheduler's preemption (SIGTERM), or by a
batch system's warning signal (SIGUSR1/SIGUSR2, e.g. ``sbatch --signal=USR1@120``) raises
:class:`TrainingInterrupted` in the main thread; the training loop then writes the checkpoint of its
last finished epoch (mixcollapse.training.loop) and lets the exception end the process, with exit code
128 + the signal's number on the command line (130 for Ctrl-C, 143 for SIGTERM).

Only signals whose handler is still the default are taken over (a host such as submitit that installed
its own keeps it), only in the main thread (Python delivers signals there), and the previous handlers
come back when training ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, n))


class TrainingInterrupted(KeyboardInterrupt):
    """A stop signal arrived during training; ``signum`` says which (``exit_code`` = 128 + signum)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame) -> None:
    raise TrainingInterrupted(signum)


def _takes_over(sig: int) -> bool:
    current = signal.getsignal(sig)
    return current in (signal.SIG_DFL, signal.default_int_handler)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, every stop signal still at its default handler raises TrainingInterrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS if _takes_over(s)}
    for s in previous:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Within the block, stop signals wait (blocked) and arrive when it ends: a save is not cut short."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
