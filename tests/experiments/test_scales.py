"""The scales: Appendix B.1's presets at full scale, the tiny shrink, the measured CPU recipe."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mixcollapse.experiments.paper import ARCHS, EXPERIMENTS, RunKey, experiments_runs, get_experiment, panel_rows
from mixcollapse.experiments.paper import PAPER_DATASETS as DATASETS
from mixcollapse.experiments.scales import run_config, scale_epoch, sweep_grid
from mixcollapse.models import build_model


def run_key(name: str) -> RunKey:
    """``"wrn-cifar10-mixup"`` as a RunKey."""
    return RunKey(*name.split("-", 2))


def log_spaced(values, lo, hi, n):
    expected = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n - 1)) for i in range(n)]
    return len(values) == n and all(math.isclose(v, e, rel_tol=1e-3) for v, e in zip(values, expected, strict=True))


@pytest.mark.parametrize("dataset", DATASETS)
def test_full_scale_wrn_presets_match_appendix_b1(dataset):
    cfg = run_config(RunKey("wrn", dataset, "mixup"), "full")
    t, m = cfg.train, cfg.model
    assert (m.name, m.depth, m.width) == ("wrn", 40, 10)
    assert (t.optimizer, t.momentum, t.weight_decay) == ("sgd", 0.9, 1e-4)
    assert (t.batch_size, t.epochs, t.schedule, t.warmup_epochs) == (128, 500, "step", 0)
    assert t.milestones == [0.3, 0.5, 0.9] and t.gamma == 0.1
    assert cfg.mixing.alpha == 1.0 and not m.fixed_etf and t.loss == "ce"
    assert cfg.data.name == dataset
    grid = sweep_grid("wrn", "full")
    assert list(grid) == ["train.lr"]
    assert log_spaced(grid["train.lr"], 0.01, 0.25, 10)
    assert grid["train.lr"][0] == 0.01 and grid["train.lr"][-1] == 0.25
    # The paper kept WRN in train mode for the figures, except eval mode on CIFAR100.
    assert cfg.analysis.bn_mode == ("eval" if dataset == "cifar100" else "train")


@pytest.mark.parametrize("dataset", DATASETS)
def test_full_scale_vit_presets_match_appendix_b1(dataset):
    cfg = run_config(RunKey("vit", dataset, "mixup"), "full")
    t, m = cfg.train, cfg.model
    assert (m.name, m.patch_size, m.embed_dim, m.vit_depth, m.num_heads) == ("vit", 4, 768, 12, 12)  # ViT-B/4
    assert (t.optimizer, t.batch_size, t.epochs) == ("adam", 128, 1000)
    assert (t.schedule, t.warmup_epochs) == ("cosine", 10)
    assert cfg.mixing.alpha == 1.0 and t.loss == "ce"
    grid = sweep_grid("vit", "full")
    assert log_spaced(grid["train.lr"], 1e-4, 3e-3, 10)
    wd = grid["train.weight_decay"]
    assert min(wd) == 0.0 and max(wd) == 0.05 and all(0 <= w <= 0.05 for w in wd) and len(wd) >= 2


def test_no_dropout_in_the_full_size_models():
    for arch in ARCHS:
        cfg = run_config(RunKey(arch, "cifar10", "mixup"), "full")
        with torch.device("meta"):
            model = build_model(cfg.model, 10, 3, 32)
        drops = [mod for mod in model.modules() if isinstance(mod, nn.Dropout) and mod.p > 0]
        assert drops == [], arch
        paths = [mod for mod in model.modules() if type(mod).__name__ == "DropPath"]
        assert paths == []


def test_tiny_scale_keeps_the_code_path():
    for key in experiments_runs(list(EXPERIMENTS)):
        full, tiny = run_config(key, "full"), run_config(key, "tiny")
        for attr in (
            "model.name",
            "model.fixed_etf",
            "model.patch_size",
            "data.name",
            "train.optimizer",
            "train.schedule",
            "train.loss",
            "mixing.alpha",
            "analysis.bn_mode",
            "analysis.lam",
        ):
            section, name = attr.split(".")
            assert getattr(getattr(full, section), name) == getattr(getattr(tiny, section), name), (key, attr)
        assert tiny.train.epochs < full.train.epochs and tiny.data.train_limit is not None
        assert (tiny.train.warmup_epochs > 0) == (full.train.warmup_epochs > 0)
        assert tiny.analysis.batch_size == tiny.train.batch_size
    tiny = run_config(run_key("wrn-cifar10-mixup"), "tiny")
    assert tiny.train.checkpoint_epochs == [1, 2, 3] and tiny.train.epochs == 3
    assert run_config(run_key("vit-cifar100-mixup"), "tiny").data.train_limit >= 500  # >= 5 images per class
    assert [len(v) for v in sweep_grid("wrn", "tiny").values()] == [2]
    assert math.prod(len(v) for v in sweep_grid("vit", "tiny").values()) == 2
    assert len([p for row in panel_rows(get_experiment("fig11"), "tiny") for p in row]) == 3
    assert run_config(run_key("vit-cifar10-mixup"), "tiny").train.checkpoint_epochs == [1, 2, 3]  # Figure 10's row


def test_scale_epoch_keeps_fractions():
    assert [scale_epoch(e, 500, 3) for e in (100, 300, 500)] == [1, 2, 3]
    assert scale_epoch(1, 1000, 3) == 1


def test_cpu_scale_is_the_measured_recipe():
    """--scale cpu: the preset wrn-fashionmnist-cpu (real data, WRN-10-2, 2,000 images, 300 epochs), the
    variants on top, Figure 10's epochs at the same fractions, and no sweep."""
    from mixcollapse.machine import cpu_bf16_supported

    mixup = run_config(run_key("wrn-fashionmnist-mixup"), "cpu")
    assert (mixup.model.depth, mixup.model.width, mixup.data.train_limit, mixup.train.epochs) == (10, 2, 2000, 300)
    assert mixup.data.name == "fashionmnist" and mixup.data.num_workers == 0 and mixup.train.threads >= 1
    assert mixup.train.amp == ("bf16" if cpu_bf16_supported() else "none") and mixup.train.channels_last
    assert mixup.train.checkpoint_epochs == [scale_epoch(e, 500, 300) for e in (100, 300, 500)]
    mse = run_config(run_key("wrn-fashionmnist-mse"), "cpu")
    assert mse.train.loss == "mse" and mse.train.lr == 5 * mixup.train.lr  # the step size CE's recipe takes
    assert (
        run_config(run_key("wrn-fashionmnist-mse"), "full").train.lr
        == run_config(run_key("wrn-fashionmnist-mixup"), "full").train.lr
    )  # at full scale the sweep chooses
    assert run_config(run_key("wrn-fashionmnist-etf"), "cpu").model.fixed_etf
    assert run_config(run_key("wrn-fashionmnist-baseline"), "cpu").mixing.alpha == 0
    with pytest.raises(ValueError, match="no recipe for wrn-cifar10"):
        run_config(run_key("wrn-cifar10-mixup"), "cpu")
    with pytest.raises(ValueError, match="no sweep"):
        sweep_grid("wrn", "cpu")


def test_cpu_scale_without_native_bf16_trains_in_float32(monkeypatch):
    from mixcollapse.experiments import scales

    monkeypatch.setattr(scales, "cpu_bf16_supported", lambda: False)
    assert run_config(run_key("wrn-fashionmnist-mixup"), "cpu").train.amp == "none"
    monkeypatch.setattr(scales, "cpu_bf16_supported", lambda: True)
    assert run_config(run_key("wrn-fashionmnist-mixup"), "cpu").train.amp == "bf16"
