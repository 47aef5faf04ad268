"""Appendix B.1 optimizers and schedules: step decay at 30/50/90%, warm-up then cosine."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mixcollapse.config import load_config
from mixcollapse.models import build_model
from mixcollapse.training.optim import (
    build_optimizer,
    build_schedule,
    build_scheduler,
    current_lr,
    milestone_epochs,
    trainable_parameters,
)


def _lrs_per_epoch(overrides: list[str], steps_per_epoch: int = 3) -> list[float]:
    """The learning rate of each epoch's first step, running the real optimizer and LambdaLR."""
    cfg = load_config(None, overrides).train
    opt = build_optimizer(cfg, nn.Linear(2, 2))
    sched = build_scheduler(cfg, opt, steps_per_epoch)
    lrs = []
    for _ in range(cfg.epochs):
        lrs.append(current_lr(opt))
        for _ in range(steps_per_epoch):
            opt.step()
            sched.step()
    return lrs


def test_sgd_step_schedule_divides_by_ten_at_30_50_90_percent():
    lrs = _lrs_per_epoch(["train.epochs=10", "train.lr=0.1", "train.schedule=step"])
    expected = [0.1] * 3 + [0.01] * 2 + [0.001] * 4 + [0.0001]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_milestone_epochs_round_half_up():
    assert milestone_epochs([0.3, 0.5, 0.9], 10) == [3, 5, 9]
    assert milestone_epochs([0.3, 0.5, 0.9], 500) == [150, 250, 450]  # the paper's WRN runs
    assert milestone_epochs([0.3, 0.5, 0.9], 5) == [2, 3, 5]
    assert milestone_epochs([0.01], 10) == [1]


def test_sgd_defaults_follow_appendix_b1():
    opt = build_optimizer(load_config(None).train, nn.Linear(2, 2))
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 1e-4


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_and_adamw(name, cls):
    opt = build_optimizer(
        load_config(None, [f"train.optimizer={name}", "train.weight_decay=0.05"]).train, nn.Linear(2, 2)
    )
    assert type(opt) is cls and opt.param_groups[0]["weight_decay"] == 0.05


def test_warmup_then_cosine_per_iteration():
    cfg = load_config(None, ["train.epochs=10", "train.schedule=cosine", "train.warmup_epochs=2"]).train
    f = build_schedule(cfg, steps_per_epoch=4)  # 40 steps, 8 of warm-up
    assert [f(s) for s in range(8)] == pytest.approx([(s + 1) / 8 for s in range(8)])
    assert f(8) == pytest.approx(1.0)
    assert f(8 + 16) == pytest.approx(0.5)  # half-way through the 32 annealed steps
    assert f(39) == pytest.approx(0.5 * (1 + math.cos(math.pi * 31 / 32)))
    after = [f(s) for s in range(8, 40)]
    assert all(a > b for a, b in zip(after[:-1], after[1:], strict=True))
    lrs = _lrs_per_epoch(["train.epochs=10", "train.schedule=cosine", "train.warmup_epochs=2", "train.lr=1"], 4)
    assert lrs[0] == pytest.approx(1 / 8) and lrs[1] == pytest.approx(5 / 8) and lrs[2] == pytest.approx(1.0)


def test_constant_schedule_and_cosine_without_warmup():
    assert _lrs_per_epoch(["train.epochs=4", "train.schedule=constant", "train.lr=0.3"]) == pytest.approx([0.3] * 4)
    lrs = _lrs_per_epoch(["train.epochs=4", "train.schedule=cosine", "train.lr=1"], steps_per_epoch=1)
    assert lrs == pytest.approx([0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])


def test_scheduler_state_round_trips():
    cfg = load_config(None, ["train.epochs=6", "train.schedule=cosine", "train.warmup_epochs=1"]).train
    opt = build_optimizer(cfg, nn.Linear(2, 2))
    sched = build_scheduler(cfg, opt, 5)
    for _ in range(13):
        opt.step()
        sched.step()
    opt2 = build_optimizer(cfg, nn.Linear(2, 2))
    sched2 = build_scheduler(cfg, opt2, 5)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for _ in range(5):
        assert current_lr(opt2) == current_lr(opt)
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()


def test_frozen_etf_classifier_is_left_out():
    cfg = load_config("digits", ["model.fixed_etf=true", "model.hidden=16"])
    model = build_model(cfg.model, 10, 1, 8)
    opt = build_optimizer(cfg.train, model)
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.classifier.weight) not in ids and id(model.classifier.bias) not in ids
    assert len(ids) == len(trainable_parameters(model)) == sum(p.requires_grad for p in model.parameters())


def test_errors():
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer(load_config(None).train, nn.Linear(2, 2).requires_grad_(False))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        build_schedule(load_config(None).train, 0)
