"""``mixcollapse compare``: runs side by side, their measures in one table, their curves, and CSV files."""

import csv
import shutil

import pytest

from mixcollapse.analysis.run import analyze_run
from mixcollapse.cli import main
from mixcollapse.training.rundir import read_metrics

SMALL = ["analysis.pairs_per_class_pair=10", "analysis.test_pairs=0"]


@pytest.mark.slow  # two analyses and four figures: about 5 s
def test_two_runs_compared_into_figures_and_csv_files(tiny_run, tmp_path, capsys):
    other = shutil.copytree(tiny_run, tmp_path / "other")
    for run in (tiny_run, other):
        analyze_run(run, overrides=SMALL, draw=False, progress=False)
    assert main(["compare", str(tiny_run), str(other), "--out", str(tmp_path / "cmp"), "--pdf"]) == 0
    printed = capsys.readouterr().out
    assert "tiny-run" in printed and "other" in printed and "pair_prob_mae" in printed
    for name in ("configurations.png", "configurations.pdf", "training_curves.png", "training_curves.pdf"):
        assert (tmp_path / "cmp" / name).stat().st_size > 1000, name
    with open(tmp_path / "cmp" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["tiny-run"] * len(read_metrics(tiny_run)) + ["other"] * len(read_metrics(other))
    assert float(rows[0]["test_accuracy"]) == read_metrics(tiny_run)[0]["test_accuracy"]
    with open(tmp_path / "cmp" / "measures.csv") as f:
        measures = list(csv.DictReader(f))
    assert [m["run"] for m in measures] == ["tiny-run", "other"] and measures[0]["pair_prob_mae"]


def test_compare_of_a_missing_run_is_one_line_and_writes_nothing(tiny_run, tmp_path, capsys):
    assert main(["compare", str(tiny_run), str(tmp_path / "missing"), "--out", str(tmp_path / "cmp")]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()
