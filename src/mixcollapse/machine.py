"""What this machine and process offer a run: cores, CPU, bf16, device, place in a torchrun launch.

Read without importing torch at import time (the command line asks before training); the bottom layer,
so analysing your own model needs nothing from the training package.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass


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


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX): autocast is then about 2x faster, else slower."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun launch (rank 0 of 1 under plain ``python``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
    try:
        return DistInfo(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )
    except ValueError as err:
        raise ValueError(f"malformed torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {err}") from None


def pick_device(preference="auto", local_rank: int | None = None):
    """The ``torch.device`` for ``train.device``: auto -> cuda:LOCAL_RANK when CUDA is available, else cpu.

    ``cuda`` means cuda:LOCAL_RANK; ``cuda:N`` is taken literally under plain ``python`` but
    replaced by cuda:LOCAL_RANK under torchrun with several processes (each rank owns one GPU).
    A ``torch.device`` is returned as it is.
    """
    import torch

    if isinstance(preference, torch.device):
        return preference
    info = env_info()
    local = info.local_rank if local_rank is None else local_rank
    if preference == "auto":
        return torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" or preference.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device '{preference}' was requested but CUDA is not available; use device=cpu or auto")
        if preference == "cuda" or info.distributed:
            return torch.device(f"cuda:{local}")
        return torch.device(preference)
    raise ValueError(f"unknown device '{preference}' (use auto, cpu, cuda or cuda:N)")
