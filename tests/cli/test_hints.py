"""Every command the toolkit prints as advice runs as printed, and progress goes to stderr, results to stdout."""

from __future__ import annotations

import re
import shlex

import pytest

from conftest import TINY_OVERRIDES
from mixcollapse.cli import main

# A command in a hint: after "with:" or between backticks, up to the end of the line, a ";" or the closing backtick.
HINT = re.compile(r"(?:with: |`)(mixcollapse [^`;\n]+)")


def _hints(text: str) -> list[str]:
    return list(dict.fromkeys(h.strip().rstrip(".") for h in HINT.findall(text)))


def _run(hint: str) -> int:
    return main(shlex.split(hint)[1:])


def test_the_hint_after_training_runs_and_a_finished_analysis_is_shown_again(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TINY_OVERRIDES, "train.epochs=1"]) == 0
    out, err = capsys.readouterr()
    assert "[train] starting" in err and "epoch 1/1" in err and out == ""  # progress on stderr only
    hints = _hints(err)
    assert hints == [f"mixcollapse analyze {run}"]
    for _ in range(2):  # measured, then shown again from its analysis.json with the same table
        assert _run(hints[0]) == 0
        out, err = capsys.readouterr()
        assert "pair_prob_mae" in out and "[analyze]" not in out
    assert "already holds this analysis" in err


def test_an_analysis_asked_for_with_other_settings_says_what_to_do(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TINY_OVERRIDES, "train.epochs=1"]) == 0
    out_dir = tmp_path / "a"
    assert main(["analyze", str(run), "--out", str(out_dir), "analysis.pairs_per_class_pair=5"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(run), "--out", str(out_dir), "analysis.pairs_per_class_pair=6"]) == 2
    err = capsys.readouterr().err
    assert "pairs_per_class_pair: 5 -> 6" in err and "--overwrite" in err
    assert main(["analyze", str(run), "--out", str(out_dir), "--overwrite", "analysis.pairs_per_class_pair=6"]) == 0


@pytest.mark.slow  # a demo at tiny settings and each of its hints: about 30 s
def test_every_hint_of_the_demo_runs_as_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the hints name relative paths, as a user's shell sees them
    settings = [*TINY_OVERRIDES, "train.epochs=1", "analysis.pairs_per_class_pair=10", "analysis.test_pairs=50"]
    assert main(["demo", "--out", "demo_out", "--jobs", "1", *settings]) == 0
    out, err = capsys.readouterr()
    assert "test acc" in out and "[demo]" not in out  # the results table on stdout, progress on stderr
    hints = _hints(err)
    assert {f"mixcollapse analyze demo_out/runs/{name}" for name in ("mixup", "baseline")} <= set(hints)
    for hint in hints:
        assert _run(hint) == 0, hint
        capsys.readouterr()
