"""The model contract (features, classifier, intermediates, feature_dim) for every model, tiny sizes."""

from __future__ import annotations

import copy

import pytest
import torch

from mixcollapse.config import ModelConfig
from mixcollapse.models import SmallNet, ViT, WideResNet, build_model

# (config, in_channels, image_size, expected intermediate dims)
TINY = {
    "small-digits": (ModelConfig(name="small"), 1, 8, [32, 64, 64, 64]),
    "small-fashion": (ModelConfig(name="small", hidden=16), 1, 28, [32, 64, 64, 16]),
    "small-cifar": (ModelConfig(name="small"), 3, 32, [32, 64, 64, 64]),
    "wrn-10-1": (ModelConfig(name="wrn", depth=10, width=1), 3, 32, [16, 32, 64]),
    "wrn-10-2-fashion": (ModelConfig(name="wrn", depth=10, width=2), 1, 28, [32, 64, 128]),
    "vit-tiny": (ModelConfig(name="vit", embed_dim=32, vit_depth=2, num_heads=2), 3, 32, [32, 32, 32]),
    "vit-tiny-nobias": (ModelConfig(name="vit", embed_dim=32, vit_depth=2, num_heads=2, bias=False), 1, 8, [32] * 3),
}


def make(key: str, num_classes: int = 10, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, list[int]]:
    """A tiny model and a random batch for it."""
    cfg, in_channels, size, dims = TINY[key]
    torch.manual_seed(seed)
    model = build_model(cfg, num_classes, in_channels, size)
    x = torch.randn(6, in_channels, size, size)
    return model, x, dims


@pytest.mark.parametrize("key", TINY)
@pytest.mark.parametrize("train", [True, False])
def test_contract(key: str, train: bool) -> None:
    model, x, dims = make(key)
    model.train(train)
    with torch.no_grad():
        h = model.features(x)
        logits = model(x)
        inter = model.intermediates(x)
    assert h.shape == (6, model.feature_dim) and model.feature_dim == dims[-1]
    assert isinstance(model.classifier, torch.nn.Linear)
    assert model.classifier.in_features == model.feature_dim and model.classifier.out_features == 10
    assert logits.shape == (6, 10)
    torch.testing.assert_close(logits, model.classifier(h))
    assert [t.shape for t in inter] == [(6, d) for d in dims]
    torch.testing.assert_close(inter[-1], h)


@pytest.mark.parametrize("key", TINY)
def test_channels_last_matches_contiguous(key: str) -> None:
    model, x, _ = make(key)
    model.eval()
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(x)
        out = fast(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("key", ["small-digits", "wrn-10-1", "vit-tiny"])
def test_bf16_autocast_and_backward(key: str) -> None:
    model, x, _ = make(key)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bias_option() -> None:
    model = build_model(ModelConfig(name="wrn", depth=10, width=1, bias=False), 10, 3, 32)
    assert model.classifier.bias is None


def test_classes_are_the_expected_ones() -> None:
    assert isinstance(make("small-digits")[0], SmallNet)
    assert isinstance(make("wrn-10-1")[0], WideResNet)
    assert isinstance(make("vit-tiny")[0], ViT)


def test_vit_features_are_timm_normed_cls_token() -> None:
    model, x, _ = make("vit-tiny")
    with torch.no_grad():
        tokens = model.encoder.forward_features(x)  # (B, 1 + L, d), after the final norm
        inter = model.intermediates(x)
    assert tokens.shape == (6, 1 + (32 // 4) ** 2, 32)
    torch.testing.assert_close(model.features(x), tokens[:, 0])
    assert len(inter) == 2 + 1  # embedding + one per block
    enc = model.encoder
    cls0 = (enc.cls_token + enc.pos_embed[:, :1]).squeeze(1).expand(6, -1)
    torch.testing.assert_close(inter[0], enc.norm(cls0))


def test_vit_has_no_dropout() -> None:
    model, x, _ = make("vit-tiny")
    model.train()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


def test_small_parameter_count() -> None:
    model = build_model(ModelConfig(name="small"), 10, 1, 8)
    assert sum(p.numel() for p in model.parameters()) < 200_000
    # Input size changes nothing: adaptive pooling feeds the same head.
    assert sum(p.numel() for p in build_model(ModelConfig(name="small"), 10, 1, 32).parameters()) == sum(
        p.numel() for p in model.parameters()
    )


@pytest.mark.parametrize(("depth", "width", "millions"), [(40, 10, 55.8), (28, 10, 36.5)])
def test_wrn_parameter_count(depth: int, width: int, millions: float) -> None:
    # Construct only: a forward pass of WRN-40-10 is too slow for a CPU test.
    model = build_model(ModelConfig(name="wrn", depth=depth, width=width), 10, 3, 32)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / 1e6 - millions) <= 0.01 * millions
    assert model.feature_dim == 64 * width
