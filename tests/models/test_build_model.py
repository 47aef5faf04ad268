"""build_model: the fixed simplex-ETF classifier option and one-line errors for bad sizes."""

from __future__ import annotations

import pytest
import torch

from mixcollapse.config import ModelConfig
from mixcollapse.models import build_model

ETF_CONFIGS = [
    ModelConfig(name="small", fixed_etf=True, etf_multiplier=3.0),
    ModelConfig(name="wrn", depth=10, width=1, fixed_etf=True, bias=False),
    ModelConfig(name="vit", embed_dim=32, vit_depth=1, num_heads=2, fixed_etf=True, etf_multiplier=0.5),
]


@pytest.mark.parametrize("cfg", ETF_CONFIGS, ids=lambda c: c.name)
def test_fixed_etf_classifier(cfg: ModelConfig) -> None:
    C = 10
    in_channels, size = (1, 8) if cfg.name == "small" else (3, 32)
    model = build_model(cfg, C, in_channels, size)
    W = model.classifier.weight.detach()
    assert W.dtype == torch.float32
    assert not any(p.requires_grad for p in model.classifier.parameters())
    if model.classifier.bias is not None:
        assert torch.count_nonzero(model.classifier.bias) == 0
    norms = W.norm(dim=1)
    torch.testing.assert_close(norms, torch.full((C,), abs(cfg.etf_multiplier)), atol=1e-5, rtol=1e-5)
    cos = (W / norms[:, None]) @ (W / norms[:, None]).T
    off = cos[~torch.eye(C, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, -1 / (C - 1)), atol=1e-5, rtol=0)

    x = torch.randn(4, in_channels, size, size)
    model(x).logsumexp(1).mean().backward()
    assert model.classifier.weight.grad is None
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("classifier."))


def test_fixed_etf_is_seeded() -> None:
    cfg = ModelConfig(name="small", fixed_etf=True)
    a = build_model(cfg, 10, 1, 8).classifier.weight
    b = build_model(cfg, 10, 1, 8).classifier.weight
    c = build_model(ModelConfig(name="small", fixed_etf=True, etf_seed=1), 10, 1, 8).classifier.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    ("cfg", "num_classes", "in_channels", "image_size", "match"),
    [
        (ModelConfig(name="resnet"), 10, 3, 32, "model.name='resnet' is not one of: small, wrn, vit"),
        (ModelConfig(name="vit", embed_dim=32, num_heads=2), 10, 3, 30, "not divisible by model.patch_size"),
        (ModelConfig(name="vit", embed_dim=30, num_heads=4), 10, 3, 32, "not divisible by model.num_heads"),
        (ModelConfig(name="wrn", depth=11), 10, 3, 32, "depth must be 6n"),
        (ModelConfig(name="wrn", depth=10, width=0), 10, 3, 32, "width >= 1"),
        (ModelConfig(name="small"), 10, 1, 4, "image_size >= 8"),
        (ModelConfig(name="small"), 1, 1, 8, "num_classes=1"),
        (ModelConfig(name="small"), 10, 0, 8, "in_channels=0"),
        (ModelConfig(name="small", hidden=8, fixed_etf=True), 100, 1, 8, "needs feature_dim >= 99"),
    ],
)
def test_build_model_errors(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(cfg, num_classes, in_channels, image_size)
