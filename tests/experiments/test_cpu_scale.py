"""The CPU scale on the real FashionMNIST, end to end, with the recipe shortened to seconds (slow)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import yaml

from mixcollapse import config
from mixcollapse.experiments import paper, scales
from mixcollapse.experiments.launch import Launch
from mixcollapse.experiments.reproduce import reproduce

pytestmark = pytest.mark.slow


@pytest.fixture
def short_recipe(tmp_path, monkeypatch):
    """The presets, with both CPU recipes cut to 2 epochs on 256 images (everything else as shipped)."""
    presets = tmp_path / "presets"
    shutil.copytree(config.PRESET_DIR, presets)
    for name in ("wrn-fashionmnist-cpu", "vit-fashionmnist-cpu"):
        path = presets / f"{name}.yaml"
        recipe = yaml.safe_load(path.read_text())
        recipe["data"]["train_limit"] = 256
        recipe["data"]["test_limit"] = 256
        recipe["train"].update(epochs=2, eval_every=1, checkpoint_every=0, checkpoint_epochs=[1, 2])
        if recipe["train"].get("warmup_epochs"):
            recipe["train"]["warmup_epochs"] = 1
        if name.startswith("vit"):  # the test set at epoch 2 only: Figure 10's epoch-1 panel reads the analysis's
            recipe["train"]["eval_every"] = 2
        recipe["analysis"].update(pairs_per_class_pair=20, test_pairs=64, recalibrate_batches=2)
        path.write_text(yaml.safe_dump(recipe))
    monkeypatch.setattr(config, "PRESET_DIR", presets)
    monkeypatch.setattr(scales, "PRESET_DIR", presets)
    return recipe


def test_fig2_on_real_fashionmnist(tmp_path, real_fashionmnist, short_recipe):
    lines: list[str] = []
    out = tmp_path / "out"
    (manifest,) = reproduce(
        "fig2",
        scale="cpu",
        datasets=["fashionmnist"],
        out=out,
        data_root=real_fashionmnist,
        launch=Launch(threads=1),
        log=lines.append,
    )
    assert manifest["scale"] == "cpu" and not manifest["synthetic"]
    assert sorted(manifest["runs"]) == ["wrn-fashionmnist-baseline", "wrn-fashionmnist-mixup", "wrn-fashionmnist-mse"]
    assert "CPU scale" in manifest["scale_note"] and "real data" in manifest["scale_note"]
    assert "first 256 training images of FashionMNIST" in manifest["scale_note"]
    assert any("no learning-rate sweep" in line for line in lines)
    titles = {p["run"]: p for p in manifest["panels"]}
    assert set(titles) == set(manifest["runs"])
    for run in manifest["runs"]:
        analysis = json.loads((out / "analysis" / run / "last" / "analysis.json").read_text())
        for key in (
            "same_cos_in_span",
            "offspan_energy",
            "pair_prob_mae",
            "pair_mass",
            "ufm_distance",
            "logit_position_mae",
            "channel_middle_density_ratio",
        ):
            assert analysis[key] is not None and math.isfinite(analysis[key]), (run, key)
        assert 0 <= analysis["offspan_energy"] <= 1 and -1 <= analysis["same_cos_in_span"] <= 1
        saved = yaml.safe_load((out / "runs" / run / "cpu" / "config.yaml").read_text())
        assert saved["data"]["root"] == real_fashionmnist and saved["train"]["threads"] == 1
    assert (out / "figures" / "fig2.png").is_file()
    # A second call trains nothing and reuses the analyses.
    lines.clear()
    reproduce(
        "fig2",
        scale="cpu",
        datasets=["fashionmnist"],
        out=out,
        data_root=real_fashionmnist,
        launch=Launch(threads=1),
        log=lines.append,
    )
    assert any("3 of 3 runs already finished" in line for line in lines), lines


def test_the_cpu_benchmark_writes_every_target(tmp_path, real_fashionmnist, short_recipe):
    """bench/bench_cpu_fashionmnist.py end to end on the shortened recipe (it measures; this only keeps it running)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_cpu_fashionmnist.py"
    spec = importlib.util.spec_from_file_location("bench_cpu_fashionmnist", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--out", str(tmp_path / "out"), "--data-root", real_fashionmnist, "--threads", "1"])
    saved = json.loads((tmp_path / "out" / "bench_cpu_fashionmnist.json").read_text())
    assert saved["targets"].keys() == result["targets"].keys()
    for arch in ("wrn", "vit"):
        for key in (
            "baseline_train_accuracy_unmixed",
            "mixup_pair_prob_mae",
            "mixup_pair_mass",
            "mixup_same_cos_in_span",
            "mixup_channel_middle_density_ratio",
            "mixup_classifier_etf_distance_falls",
            "alpha0.4_classifier_etf_distance_falls",
        ):
            target = saved["targets"][f"{arch}_{key}"]
            assert isinstance(target["met"], bool) and target["measured"] is not None
        assert saved["fig3_readout"][arch]["mixes"] > 0
    assert (
        "wrn_mse_channel_position_mae" in saved["targets"]
        and "vit_adamw_classifier_etf_distance_falls" in saved["targets"]
    )
    assert {a: set(v) for a, v in saved["runs"].items()} == {
        "wrn": {"mixup", "baseline", "mse", "etf", "alpha0.4"},
        "vit": {"mixup", "baseline", "alpha0.4", "adamw"},
    }
    assert saved["table1_paper"] == {
        "wrn-baseline": 95.10,
        "wrn-mixup": 94.21,
        "vit-baseline": 93.71,
        "vit-mixup": 94.24,
    }
    assert set(saved["command_seconds"]) == set(paper.EXPERIMENTS)
    fig10 = json.loads((tmp_path / "out" / "experiments" / "fig10.json").read_text())
    assert [(p["run"], p["epoch"]) for p in fig10["panels"]][3:] == [("vit-fashionmnist-mixup", 1)] * 2 + [
        ("vit-fashionmnist-mixup", 2)
    ]
    assert all(p["test_accuracy"] is not None for p in fig10["panels"])  # evaluated by training, or by the analysis
    figures = tmp_path / "out" / "figures"
    assert {p.stem for p in figures.glob("*.png")} >= {"fig1", "fig3", "fig8", "fig9", "fig10", "fig11", "fig12"}
