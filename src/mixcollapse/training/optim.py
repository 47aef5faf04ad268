"""Optimizers and learning-rate schedules of Appendix B.1.

WideResNet: SGD, momentum 0.9, weight decay 1e-4, learning rate divided by 10 at 30%, 50% and
90% of training (``schedule: step``). ViT: Adam (or AdamW, Figure 12) with 10 epochs of linear
warm-up and cosine annealing over the total epochs (``schedule: cosine``, ``warmup_epochs: 10``).

Schedules are stepped once per optimizer step (iteration) by a ``LambdaLR`` whose multiplier is
:class:`LRSchedule`. The step schedule only changes at epoch boundaries (milestone epoch =
``round(fraction * epochs)``, halves rounded up), so it is the per-epoch schedule "annealed at 30%
of training"; warm-up and cosine change every iteration, which is smoother than per-epoch jumps
(a 10-epoch warm-up in 10 jumps starts at a tenth of the peak for a whole epoch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from mixcollapse.config import TrainConfig


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters with requires_grad (a fixed-ETF classifier is frozen and left out)."""
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> Optimizer:
    """SGD (momentum, weight decay), Adam (L2 weight decay) or AdamW (decoupled weight decay)."""
    params = trainable_parameters(model)
    if not params:
        raise ValueError("the model has no trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer '{cfg.optimizer}' (known: sgd, adam, adamw)")


def milestone_epochs(milestones: list[float], epochs: int) -> list[int]:
    """Epochs (0-based, the first epoch at the lower rate) of training fractions: 0.3 of 10 -> 3."""
    return [max(1, math.floor(f * epochs + 0.5)) for f in milestones]


@dataclass
class LRSchedule:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based iteration).

    factor(step) = warmup(step) * main(step):
      warmup: (step + 1) / warmup_steps during the first warmup_steps steps, then 1;
      step:     gamma ** (number of milestones reached by the current epoch);
      cosine:   (1 + cos(pi * t)) / 2 with t the fraction of the post-warm-up steps done;
      constant: 1.
    A plain dataclass, so ``LambdaLR.state_dict`` saves its fields into checkpoints.
    """

    kind: str
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int = 0
    milestones: list[int] = field(default_factory=list)  # epochs (0-based) where the step schedule decays
    gamma: float = 0.1

    def __call__(self, step: int) -> float:
        warm = (step + 1) / self.warmup_steps if step < self.warmup_steps else 1.0
        if self.kind == "constant":
            main = 1.0
        elif self.kind == "step":
            epoch = step // self.steps_per_epoch
            main = self.gamma ** sum(epoch >= m for m in self.milestones)
        elif self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            t = min(max(step - self.warmup_steps, 0) / span, 1.0)
            main = 0.5 * (1.0 + math.cos(math.pi * t))
        else:
            raise ValueError(f"unknown schedule '{self.kind}' (known: step, cosine, constant)")
        return warm * main


def build_schedule(cfg: TrainConfig, steps_per_epoch: int) -> LRSchedule:
    """The LR multiplier of ``cfg`` for ``steps_per_epoch`` optimizer steps per epoch."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch} must be >= 1 (is the training set empty?)")
    return LRSchedule(
        kind=cfg.schedule,
        steps_per_epoch=steps_per_epoch,
        total_steps=cfg.epochs * steps_per_epoch,
        warmup_steps=cfg.warmup_epochs * steps_per_epoch,
        milestones=milestone_epochs(cfg.milestones, cfg.epochs),
        gamma=cfg.gamma,
    )


def build_scheduler(cfg: TrainConfig, optimizer: Optimizer, steps_per_epoch: int) -> LambdaLR:
    """LambdaLR over ``build_schedule``; call ``scheduler.step()`` after every ``optimizer.step()``."""
    return LambdaLR(optimizer, build_schedule(cfg, steps_per_epoch))


def current_lr(optimizer: Optimizer) -> float:
    """Learning rate of the first parameter group (all groups share the schedule)."""
    return float(optimizer.param_groups[0]["lr"])
