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
    # A finished demo is never overwritten silently.
    assert main(["demo", "--out", str(out)]) == 2
    assert "already holds a finished demo" in capsys.readouterr().err
