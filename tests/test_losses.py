"""Soft-target cross-entropy and MSE against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mixcollapse.losses import get_loss, mse_loss, soft_cross_entropy


def test_soft_cross_entropy_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]; CE = -(1/2) ln(1/4) - (1/2) ln(3/4) = ln 4 - (ln 3) / 2
    logits = torch.tensor([[0.0, math.log(3.0)]])
    target = torch.tensor([[0.5, 0.5]])
    assert soft_cross_entropy(logits, target).item() == pytest.approx(math.log(4) - math.log(3) / 2, abs=1e-6)


def test_soft_cross_entropy_is_a_batch_mean():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    target = torch.tensor([[0.0, 1.0], [0.25, 0.75]])
    # row 1: -ln(3/4); row 2: -ln(1/2) whatever the target (equal logits)
    expected = (-math.log(0.75) + math.log(2.0)) / 2
    assert soft_cross_entropy(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_soft_cross_entropy_with_one_hot_targets_is_the_usual_cross_entropy():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    assert torch.allclose(soft_cross_entropy(logits, F.one_hot(y, 4).float()), F.cross_entropy(logits, y))


def test_soft_cross_entropy_floor_is_the_target_entropy():
    # min over logits of CE(z, y) is the entropy H(y), reached at softmax(z) = y: mixup losses never reach 0.
    target = torch.tensor([[0.3, 0.7]])
    logits = torch.log(target)
    entropy = -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))
    assert soft_cross_entropy(logits, target).item() == pytest.approx(entropy, abs=1e-6)


def test_mse_by_hand():
    logits = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    # squared errors 0, 4, 0.25, 0.25 averaged over the 4 entries
    assert mse_loss(logits, target).item() == pytest.approx(4.5 / 4)


def test_losses_compute_in_float32_from_bf16_logits():
    logits = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.bfloat16)
    out = soft_cross_entropy(logits, torch.tensor([[0.5, 0.5]]))
    assert out.dtype == torch.float32


def test_get_loss():
    assert get_loss("ce") is soft_cross_entropy and get_loss("mse") is mse_loss
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("hinge")
