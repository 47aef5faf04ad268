"""What this machine offers a run, read without importing torch (the command line asks before training)."""

from __future__ import annotations

import os
import platform


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's name as the kernel gives it (``model name`` in /proc/cpuinfo), recorded beside benchmark times."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):  # pragma: no cover - not Linux
        return platform.processor() or platform.machine()
