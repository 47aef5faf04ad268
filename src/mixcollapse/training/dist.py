"""Everything that knows about processes and ranks: torchrun, process groups, devices, reductions.

The training loop reads the same on one process or many (torchvision references'
``init_distributed_mode``). Under plain ``python`` there is no process group and every helper
degrades to the single-process answer (rank 0 of 1, reductions are identities), so nothing else
in the toolkit has to ask whether it runs distributed.

Backends: nccl when the process's device is a CUDA GPU, gloo otherwise (CPU runs, tests).
"""

from __future__ import annotations

import gc
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

from mixcollapse.machine import DistInfo, env_info, pick_device

_OWN_GROUP = False  # True when setup() created the process group (then cleanup() destroys it)


def setup(device_preference: str = "auto") -> tuple[DistInfo, torch.device]:
    """Pick this process's device and, under torchrun with WORLD_SIZE > 1, join the process group.

    A process group that already exists (created by the caller) is used as it is and left alone
    by ``cleanup``.
    """
    global _OWN_GROUP
    info = env_info()
    device = pick_device(device_preference, info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if info.distributed and not tdist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        tdist.init_process_group(backend=backend, init_method="env://")
        _OWN_GROUP = True
    return info, device


def cleanup() -> None:
    """Destroy the process group if ``setup`` created it, after every rank got there.

    DistributedDataParallel wrappers hold the group; one left for the interpreter's exit to free
    makes gloo's threads die at finalization (``terminate called without an active exception``).
    Collecting garbage first frees the wrappers of a finished training loop.
    """
    global _OWN_GROUP
    if _OWN_GROUP and tdist.is_initialized():
        gc.collect()
        tdist.barrier()  # no rank tears down while another still talks to it
        tdist.destroy_process_group()
    _OWN_GROUP = False


def abandon() -> None:
    """Forget the process group without tearing it down (after an error, when peers may be stuck in
    a collective: a barrier or destroy here could hang); the process is expected to exit."""
    global _OWN_GROUP
    _OWN_GROUP = False


def is_distributed() -> bool:
    """True inside an initialized process group of more than one process."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return tdist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0)."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        tdist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place, and return it (the identity on one process).

    The tensor must live on this process's device (a CUDA tensor under nccl).
    """
    if is_distributed():
        tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every process (picklable objects)."""
    if not is_distributed():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list:
    """Every process's ``obj``, in rank order, on every process."""
    if not is_distributed():
        return [obj]
    out: list = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` inside a process group, else ``model`` unchanged."""
    if not is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


@torch.no_grad()
def broadcast_buffers(model: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (batch-norm running statistics) to every process.

    DDP broadcasts buffers before each training forward, and each rank then updates them with its
    own batch, so after an epoch the ranks' running statistics differ slightly. Evaluating with
    rank 0's buffers makes the measured model the one rank 0 checkpoints.
    """
    if not is_distributed():
        return
    for buf in unwrap(model).buffers():
        tdist.broadcast(buf, src=src)
