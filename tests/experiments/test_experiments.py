"""The paper's experiments: the list, Appendix B.1's presets, the tiny scale, data checks, estimates."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mixcollapse.experiments.cost import estimate_gpu_hours, trainings
from mixcollapse.experiments.paper import (
    ARCHS,
    EXPERIMENTS,
    RunKey,
    experiments_runs,
    get_experiment,
    panel_rows,
    plan_runs,
    select_datasets,
)
from mixcollapse.experiments.paper import PAPER_DATASETS as DATASETS
from mixcollapse.experiments.reproduce import list_experiments, reproduce
from mixcollapse.experiments.scales import run_config, scale_epoch, sweep_grid
from mixcollapse.models import build_model


def run_key(name: str) -> RunKey:
    """``"wrn-cifar10-mixup"`` as a RunKey."""
    return RunKey(*name.split("-", 2))


PAPER_ITEMS = ("fig1", "fig2", "fig3", "fig5", "fig7", "fig8", "fig9", "fig10", "fig11", "fig12", "table1", "table2")


def log_spaced(values, lo, hi, n):
    expected = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n - 1)) for i in range(n)]
    return len(values) == n and all(math.isclose(v, e, rel_tol=1e-3) for v, e in zip(values, expected, strict=True))


def test_list_shows_every_experiment_of_the_paper():
    text = list_experiments()
    assert tuple(EXPERIMENTS) == PAPER_ITEMS
    listed = [line.split()[0] for line in text.splitlines()[2:] if line.strip()]
    for name in PAPER_ITEMS:
        assert name in listed
    assert "A100-h" in text and "all" in listed


@pytest.mark.parametrize("dataset", DATASETS)
def test_full_scale_wrn_presets_match_appendix_b1(dataset):
    cfg = run_config(RunKey("wrn", dataset, "mixup"), "full")
    t, m = cfg.train, cfg.model
    assert (m.name, m.depth, m.width) == ("wrn", 40, 10)
    assert (t.optimizer, t.momentum, t.weight_decay) == ("sgd", 0.9, 1e-4)
    assert (t.batch_size, t.epochs, t.schedule, t.warmup_epochs) == (128, 500, "step", 0)
    assert t.milestones == [0.3, 0.5, 0.9] and t.gamma == 0.1
    assert cfg.mixup.alpha == 1.0 and not m.fixed_etf and t.loss == "ce"
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
    assert cfg.mixup.alpha == 1.0 and t.loss == "ce"
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


def test_variants_of_the_figures():
    assert run_config(run_key("wrn-cifar10-alpha0.4")).mixup.alpha == 0.4
    assert run_config(run_key("vit-cifar10-alpha0.4")).mixup.alpha == 0.4
    assert run_config(run_key("vit-cifar10-adamw")).train.optimizer == "adamw"
    assert run_config(run_key("wrn-cifar10-etf")).model.fixed_etf
    assert run_config(run_key("wrn-cifar10-mse")).train.loss == "mse"
    assert run_config(run_key("wrn-cifar10-baseline")).mixup.alpha == 0.0
    assert run_config(run_key("wrn-cifar10-mixup")).train.checkpoint_epochs == [100, 300, 500]
    # What each figure reads.
    assert {k.name for k in get_experiment("fig9").runs} == {"wrn-cifar10-alpha0.4", "vit-cifar10-alpha0.4"}
    assert {k.name for k in get_experiment("fig12").runs} == {"vit-cifar10-adamw"}
    assert {k.name for k in get_experiment("fig7").runs} == {"wrn-cifar10-etf"}
    assert [k.name for k in get_experiment("fig2").runs] == ["wrn-cifar10-baseline", "wrn-cifar10-mse",
                                                             "wrn-cifar10-mixup"]
    assert len(get_experiment("fig1").runs) == 6 and len(get_experiment("fig8").runs) == 6
    assert {k.variant for k in get_experiment("fig8").runs} == {"baseline"}
    assert [p.checkpoint_epoch for p in get_experiment("fig10").panels[0]] == [100, 300, 500]
    assert len({p.seed for row in get_experiment("fig11").panels for p in row}) == 8


def test_baselines_reuse_the_best_mixup_hyperparameters():
    plan = plan_runs(experiments_runs(["table1"]))
    assert {k.variant for k in plan.swept} == {"mixup"} and len(plan.swept) == 6
    assert {k.variant for k in plan.inherited} == {"baseline"}
    assert all(k.sweep_source() == RunKey(k.arch, k.dataset, "mixup") for k in plan.inherited)


def test_tiny_scale_keeps_the_code_path():
    for key in experiments_runs(list(EXPERIMENTS)):
        full, tiny = run_config(key, "full"), run_config(key, "tiny")
        for attr in ("model.name", "model.fixed_etf", "model.patch_size", "data.name", "train.optimizer",
                     "train.schedule", "train.loss", "mixup.alpha", "analysis.bn_mode", "analysis.lam"):
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


def test_rows_beyond_the_paper_only_below_full_scale():
    """Figures 10 and 11 get a ViT row at the tiny and cpu scales; at full scale they are the paper's, and the
    cost estimates count the paper's runs only."""
    from mixcollapse.experiments.paper import at_scale

    fig10, fig11 = get_experiment("fig10"), get_experiment("fig11")
    assert {k.arch for k in at_scale(fig10, "full").runs} == {"wrn"}
    assert {k.arch for k in at_scale(fig10, "cpu").runs} == {"wrn", "vit"}
    assert [p.checkpoint_epoch for p in at_scale(fig10, "tiny").panels[1]] == [200, 600, 1000]
    assert "vit-cifar10-mixup" not in {k.name for k in experiments_runs(["fig10"])}
    tiny = panel_rows(at_scale(fig11, "tiny"), "tiny")  # the first three of each architecture, a row each
    assert [[(p.run.arch, p.seed) for p in row] for row in tiny] == [[("wrn", s) for s in (1, 2, 3)],
                                                                    [("vit", s) for s in (1, 2, 3)]]
    assert len(panel_rows(at_scale(fig11, "cpu"), "cpu")) == 3
    kept = select_datasets(at_scale(fig10, "cpu"), ["fashionmnist"], archs=("wrn",))
    assert {k.name for k in kept.runs} == {"wrn-fashionmnist-mixup"}


def test_scale_epoch_keeps_fractions():
    assert [scale_epoch(e, 500, 3) for e in (100, 300, 500)] == [1, 2, 3]
    assert scale_epoch(1, 1000, 3) == 1


def test_gpu_estimates_count_shared_runs_once():
    single = {n: estimate_gpu_hours([n]) for n in EXPERIMENTS}
    everything = estimate_gpu_hours(list(EXPERIMENTS))
    assert all(h > 0 for h in single.values())
    assert max(single.values()) < everything < sum(single.values())
    assert single["table1"] == pytest.approx(single["fig8"])  # the same runs
    assert estimate_gpu_hours(["fig1"], "H100") < single["fig1"]
    assert dict(trainings([run_key("wrn-cifar10-baseline")])) == {run_key("wrn-cifar10-mixup"): 10,
                                                                   run_key("wrn-cifar10-baseline"): 1}


def test_unknown_experiment_and_run_names():
    with pytest.raises(ValueError, match="unknown experiment 'fig4'"):
        get_experiment("fig4")


def test_full_scale_refuses_missing_data_before_training(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        reproduce("fig7", scale="full", out=out, data_root=tmp_path / "nodata", log=lambda s: None)
    message = str(info.value)
    assert "\n" not in message
    assert "--scale full needs the real data: CIFAR10 data not found" in message
    assert "cifar-10-batches-py" in message and "tar xzf" in message
    assert not (out / "sweeps").exists() and not (out / "runs").exists()


def test_full_scale_refuses_to_train_without_a_gpu(tmp_path):
    from mixcollapse.data.fake import write_fake_cifar10

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    write_fake_cifar10(tmp_path / "data", n_train=20, n_test=10)
    (tmp_path / "data" / "FAKE_DATA.txt").unlink()  # looks like the real files now
    with pytest.raises(ValueError, match="no GPU is visible"):
        reproduce("fig7", scale="full", out=tmp_path / "out", data_root=tmp_path / "data", log=lambda s: None)
    assert not (tmp_path / "out" / "sweeps").exists()


def test_full_scale_refuses_synthetic_files(tmp_path):
    from mixcollapse.data.fake import write_fake_cifar10

    write_fake_cifar10(tmp_path / "data", n_train=20, n_test=10)
    with pytest.raises(ValueError, match="holds synthetic"):
        reproduce("fig7", scale="full", out=tmp_path / "out", data_root=tmp_path / "data", log=lambda s: None)


def test_datasets_filter_multi_dataset_experiments():
    fig1 = select_datasets(get_experiment("fig1"), ["fashionmnist"])
    assert [p.run.name for row in fig1.panels for p in row] == ["wrn-fashionmnist-mixup", "vit-fashionmnist-mixup"]
    assert fig1.title.endswith("(here: WRN and ViT × FashionMNIST)")
    fig1 = select_datasets(get_experiment("fig1"), ["fashionmnist"], archs=("wrn",))
    assert [k.name for k in fig1.runs] == ["wrn-fashionmnist-mixup"]
    assert fig1.title.endswith("(here: WRN × FashionMNIST)")
    table1 = select_datasets(get_experiment("table1"), ["fashionmnist", "cifar100"], archs=("wrn",))
    assert table1.table.rows == (("wrn", "fashionmnist"), ("wrn", "cifar100"))
    assert select_datasets(get_experiment("fig1"), None) == get_experiment("fig1")


def test_datasets_move_single_dataset_experiments():
    """Figure 2 is drawn on CIFAR10 alone: --datasets fashionmnist draws the same panels on FashionMNIST."""
    fig2 = select_datasets(get_experiment("fig2"), ["fashionmnist"])
    assert [k.name for k in fig2.runs] == ["wrn-fashionmnist-baseline", "wrn-fashionmnist-mse",
                                           "wrn-fashionmnist-mixup"]
    assert "FashionMNIST" in fig2.title and "CIFAR10" not in fig2.title
    fig10 = select_datasets(get_experiment("fig10"), ["fashionmnist"])
    assert [p.checkpoint_epoch for row in fig10.panels for p in row] == [100, 300, 500]
    table2 = select_datasets(get_experiment("table2"), ["fashionmnist"])
    assert table2.table.rows == (("wrn", "fashionmnist"), ("vit", "fashionmnist"))
    assert "Drawn here on FashionMNIST" in table2.table.caption
    with pytest.raises(ValueError, match="nothing to draw"):
        select_datasets(get_experiment("fig12"), ["fashionmnist"], archs=("wrn",))  # a ViT experiment
    with pytest.raises(ValueError, match="expected names from"):
        select_datasets(get_experiment("fig1"), ["mnist"])


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
    assert run_config(run_key("wrn-fashionmnist-mse"), "full").train.lr == run_config(
        run_key("wrn-fashionmnist-mixup"), "full").train.lr  # at full scale the sweep chooses
    assert run_config(run_key("wrn-fashionmnist-etf"), "cpu").model.fixed_etf
    assert run_config(run_key("wrn-fashionmnist-baseline"), "cpu").mixup.alpha == 0
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


def test_cpu_scale_refuses_missing_data_in_one_line(tmp_path, capsys):
    from mixcollapse import cli

    code = cli.main(["reproduce", "fig1", "--scale", "cpu", "--datasets", "fashionmnist", "--data-root",
                     str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "apt-get install dataset-fashion-mnist" in err and str(tmp_path / "none") in err
    assert "data.download=true" not in err or "data.download is false" in err
    assert not (tmp_path / "o" / "runs").exists()


def test_cpu_scale_names_what_has_no_recipe(tmp_path):
    with pytest.raises(ValueError, match="no recipe for vit-cifar10"):
        reproduce("fig12", scale="cpu", datasets=["cifar10"], out=tmp_path, data_root=tmp_path, log=lambda s: None)
    with pytest.raises(ValueError, match="no recipe for wrn-cifar10"):
        reproduce("fig7", scale="cpu", datasets=["cifar10"], out=tmp_path, data_root=tmp_path, log=lambda s: None)


def test_cli_datasets_argument(capsys):
    from mixcollapse import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["reproduce", "fig1", "--datasets", "fashion"])
    assert info.value.code == 2 and "expected a comma-separated list" in capsys.readouterr().err


def test_titles_name_what_is_drawn_at_smaller_scales():
    """Figure 10's title names the epochs drawn, and the paper's model names stay at full scale."""
    from pathlib import Path

    from mixcollapse.experiments.runs import Context
    from mixcollapse.experiments.steps import _suptitle

    fig10 = select_datasets(get_experiment("fig10"), ["fashionmnist"], archs=("wrn",))
    key = fig10.runs[0]
    for scale, listed in (("cpu", "60, 180, 300 of 300"), ("tiny", "1, 2, 3 of 3")):
        ctx = Context(out=Path("."), scale=scale)
        ctx.configs[key.name] = run_config(key, scale)
        title = _suptitle(fig10, ctx)
        assert f"at epochs {listed} (the paper: 100, 300, 500 of 500)" in title
        assert "WRN-40-10" not in title and "WRN on FashionMNIST" in title
    ctx = Context(out=Path("."), scale="full")
    ctx.configs[key.name] = run_config(key, "full")
    assert "WRN-40-10 on FashionMNIST at epochs 100, 300 and 500" in _suptitle(fig10, ctx)
    # with the ViT row (below full scale), each architecture's epochs, and Figure 11 says what its rows are
    from mixcollapse.experiments.paper import at_scale

    ctx = Context(out=Path("."), scale="cpu")
    both = {n: select_datasets(at_scale(get_experiment(n), "cpu"), ["fashionmnist"]) for n in ("fig10", "fig11")}
    for key in {*both["fig10"].runs, *both["fig11"].runs}:
        ctx.configs[key.name] = run_config(key, "cpu")
    assert "WRN and ViT on FashionMNIST: WRN at epochs 60, 180, 300 of 300; ViT at epochs 80, 240, 400 of 400 " \
        "(the paper: WRN only, at 100, 300, 500 of 500" in _suptitle(both["fig10"], ctx)
    assert "(WRN, FashionMNIST), and below of a ViT (not in the paper)" in _suptitle(both["fig11"], ctx)


def test_cpu_scale_defaults_to_the_datasets_with_a_recipe(tmp_path):
    """`reproduce fig1 --scale cpu` without --datasets draws FashionMNIST (the one recipe) and says so."""
    from mixcollapse.experiments.scales import cpu_datasets

    assert cpu_datasets() == ["fashionmnist"]
    lines: list[str] = []
    with pytest.raises(ValueError, match="needs the real data: FashionMNIST data not found"):
        reproduce("fig1", scale="cpu", out=tmp_path / "o", data_root=tmp_path / "none", log=lines.append)
    assert any("datasets with a CPU recipe, fashionmnist" in line for line in lines)
