"""The main job end to end: mixup's different-class probabilities follow lambda, the baseline's don't."""

import json
from pathlib import Path

import pytest

from mixcollapse.cli import main


@pytest.mark.slow
def test_demo_end_to_end_shows_mixup_following_lambda(tmp_path, capsys):
    out = tmp_path / "demo"
    # The real demo's settings (about a minute on one core), fewer pairs to keep the suite short.
    assert main(["demo", "--out", str(out), "train.progress=false", "analysis.pairs_per_class_pair=150"]) == 0
    printed = capsys.readouterr().out
    assert "mixup" in printed and "baseline" in printed and "ECE" in printed
    summary = json.loads((out / "summary.json").read_text())
    mixup, baseline = summary["runs"]["mixup"], summary["runs"]["baseline"]
    for run in (mixup, baseline):
        assert set(run) >= {"test_accuracy", "ece", "pair_prob_mae", "figures"}
        assert run["test_accuracy"] > 0.9
        assert all(Path(p).exists() for p in run["figures"])
    # Measured: about 0.10 against 0.21; mixed 8x8 digits leak ~10% probability to third classes.
    assert mixup["pair_prob_mae"] < 0.6 * baseline["pair_prob_mae"]
    # Run again, a finished demo shows its results (exit 0) and changes nothing; other settings are refused.
    before = (out / "summary.json").read_text()
    assert main(["demo", "--out", str(out), "train.progress=false", "analysis.pairs_per_class_pair=150"]) == 0
    printed, progress = capsys.readouterr()
    assert "holds a finished demo" in progress and "mixup" in printed and "ECE" in printed
    assert (out / "summary.json").read_text() == before
    assert main(["demo", "--out", str(out)]) == 2
    assert "finished demo with other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_overwrite_restarts_an_interrupted_demo_with_new_settings(tmp_path, tiny_config):
    from conftest import TINY_OVERRIDES
    from mixcollapse.experiments.demo import run_demo
    from mixcollapse.training.loop import train
    from mixcollapse.training.rundir import read_metrics

    out = tmp_path / "demo"
    # interrupted: the mixup run exists (one epoch of two done), no summary yet
    train(
        tiny_config("train.epochs=2", "train.checkpoint_every=1", "name=digits-mixup"),
        out / "runs" / "mixup",
        stop_after_epoch=1,
    )
    settings = [*TINY_OVERRIDES, "train.epochs=1", "analysis.pairs_per_class_pair=10", "analysis.test_pairs=50"]
    summary = run_demo(out, overrides=settings, overwrite=True, progress=False)  # other settings: starts over
    assert summary["overrides"] == settings and len(summary["runs"]) == 2
    assert [row["epoch"] for row in read_metrics(out / "runs" / "mixup")] == [1]


@pytest.mark.slow  # two processes start: about 10 s
def test_runs_side_by_side_give_the_numbers_of_runs_one_after_the_other(tmp_path, capfd):
    from conftest import TINY_OVERRIDES
    from mixcollapse.cli.main import show_logs
    from mixcollapse.experiments.demo import run_demo

    show_logs()
    settings = [*TINY_OVERRIDES, "train.epochs=2", "analysis.pairs_per_class_pair=10", "analysis.test_pairs=50"]
    apart = run_demo(tmp_path / "apart", overrides=settings, progress=False, jobs=1)
    capfd.readouterr()
    together = run_demo(tmp_path / "together", overrides=settings, progress=False, jobs=2)
    printed = capfd.readouterr().err  # the workers write their progress to the file descriptor
    assert "side by side (2 processes)" in printed
    assert "mixup    | epoch 2/2" in printed and "baseline | [analyze]" in printed  # the workers' lines, labelled
    for name in ("mixup", "baseline"):
        a, b = apart["runs"][name], together["runs"][name]
        numbers = [k for k, v in a.items() if isinstance(v, float)]
        assert len(numbers) > 10 and all(a[k] == b[k] for k in numbers), name
        assert all(Path(p).is_file() for p in b["figures"])
