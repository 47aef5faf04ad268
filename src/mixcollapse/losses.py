"""Losses on soft (mixed) targets: cross-entropy of eq. 1 and the MSE of Figure 2."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of CE(logits, y) = -sum_k y_k log softmax(logits)_k for soft targets y."""
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def mse_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between logits and the mixed one-hot targets, PyTorch's convention.

    Averaged over batch and classes, as ``torch.nn.functional.mse_loss``; no softmax (Figure 2).
    """
    return F.mse_loss(logits.float(), target)


LOSS_FUNCTIONS = {"ce": soft_cross_entropy, "mse": mse_loss}


def get_loss(name: str):
    """The loss function named in the config (``ce`` or ``mse``)."""
    try:
        return LOSS_FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown loss '{name}' (known: {', '.join(LOSS_FUNCTIONS)})") from None
