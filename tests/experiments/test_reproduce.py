"""reproduce refuses what it cannot do before training (missing or synthetic data, no GPU, no CPU recipe);
titles say what is drawn."""

from __future__ import annotations

import json

import pytest
import torch

from mixcollapse.experiments.paper import get_experiment, select_datasets
from mixcollapse.experiments.reproduce import reproduce
from mixcollapse.experiments.scales import run_config


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


def test_cpu_scale_refuses_missing_data_in_one_line(tmp_path, capsys):
    from mixcollapse import cli

    code = cli.main(
        [
            "reproduce",
            "fig1",
            "--scale",
            "cpu",
            "--datasets",
            "fashionmnist",
            "--data-root",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
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
    assert (
        "WRN and ViT on FashionMNIST: WRN at epochs 60, 180, 300 of 300; ViT at epochs 80, 240, 400 of 400 "
        "(the paper: WRN only, at 100, 300, 500 of 500" in _suptitle(both["fig10"], ctx)
    )
    assert "(WRN, FashionMNIST), and below of a ViT (not in the paper)" in _suptitle(both["fig11"], ctx)


def test_cpu_scale_defaults_to_the_datasets_with_a_recipe(tmp_path):
    """`reproduce fig1 --scale cpu` without --datasets draws FashionMNIST (the one recipe) and says so."""
    from mixcollapse.experiments.scales import cpu_datasets

    assert cpu_datasets() == ["fashionmnist"]
    lines: list[str] = []
    with pytest.raises(ValueError, match="needs the real data: FashionMNIST data not found"):
        reproduce("fig1", scale="cpu", out=tmp_path / "o", data_root=tmp_path / "none", log=lines.append)
    assert any("datasets with a CPU recipe, fashionmnist" in line for line in lines)


@pytest.mark.slow  # eight tiny trainings (two of them stopped at epoch 1) and the table: about 15 s
def test_a_tiny_reproduction_with_halving_sweeps_keeps_the_best_of_the_runs_trained_to_the_end(tmp_path, capsys):
    from mixcollapse.cli import main

    out = tmp_path / "out"
    argv = ["reproduce", "table2", "--scale", "tiny", "--datasets", "fashionmnist", "--sweep", "halving"]
    assert main([*argv, "--out", str(out), "--data-root", str(tmp_path / "none")]) == 0
    manifest = json.loads((out / "experiments" / "table2.json").read_text())
    assert manifest["sweep"] == "halving"
    for sweep_dir in sorted((out / "sweeps").iterdir()):  # WRN's and ViT's: two learning rates each, rungs 1 and 3
        result = json.loads((sweep_dir / "sweep.json").read_text())
        assert result["method"] == "halving" and result["halving"]["rungs"] == [1, 3]
        (decision,) = result["halving"]["decisions"]
        scores = decision["test_accuracy"]
        assert decision["kept"] == [max(scores, key=scores.get)]
        assert sorted(r["state"] for r in result["runs"]) == ["finished", "halted"]
        assert result["best"]["name"] == decision["kept"][0]
        run = manifest["runs"][sweep_dir.name]
        assert run["run_dir"] == f"sweeps/{sweep_dir.name}/{decision['kept'][0]}" and run["epochs"] == 3
    assert main(["reproduce", "table2", "--scale", "cpu", "--sweep", "halving", "--out", str(out)]) == 2
    assert "--sweep halving needs a sweep" in capsys.readouterr().err
