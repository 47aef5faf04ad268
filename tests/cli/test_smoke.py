"""One subprocess per command: ``python -m mixcollapse COMMAND`` starts, parses, and ends as documented.

Everything else about the commands is tested in process (test_cli.py); these check the entry point
itself: the module runs, the exit code and the streams are what a shell sees.
"""

import json
import subprocess
import sys

import pytest

from conftest import TINY_OVERRIDES

SMALL_THEORY = ["--num-classes", "4", "--dim", "5", "--samples", "300", "--weight-decay-h", "1e-2"]


def mixcollapse(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mixcollapse", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def assert_one_line(proc: subprocess.CompletedProcess, prefix: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(prefix), proc.stderr


def test_train_validates_the_config_before_anything_else(tmp_path):
    proc = mixcollapse("train", "--out", str(tmp_path / "run"), "mixing.alpha=-0.5")
    assert_one_line(proc, "mixcollapse train: error: mixing.alpha=-0.5 must be >= 0")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_and_analyze(tmp_path):
    run = tmp_path / "run"
    proc = mixcollapse("train", "--out", str(run), *TINY_OVERRIDES, "train.epochs=2", "train.progress=true")
    assert proc.returncode == 0, proc.stderr
    assert "[train] starting" in proc.stderr and "epoch 2/2" in proc.stderr and proc.stdout == ""  # progress: stderr
    assert "it/s" not in proc.stderr and "\r" not in proc.stdout + proc.stderr  # no bars into a pipe
    proc = mixcollapse("analyze", str(run), "analysis.pairs_per_class_pair=10", "analysis.test_pairs=0")
    assert proc.returncode == 0, proc.stderr
    assert "[analyze] neural collapse on the training data" in proc.stderr and "it/s" not in proc.stderr
    assert "60 mixup pairs" in proc.stdout and "[analyze]" not in proc.stdout  # the results alone on stdout
    proc = mixcollapse(
        "analyze", str(run), "--json", "--overwrite", "analysis.pairs_per_class_pair=10", "analysis.test_pairs=0"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_pairs"] == 60
    assert_one_line(mixcollapse("analyze", str(tmp_path / "missing")), "mixcollapse analyze: error:")


def test_demo_refuses_bad_overrides(tmp_path):
    assert_one_line(mixcollapse("demo", "--out", str(tmp_path / "d"), "train.lr=-1"), "mixcollapse demo: error:")


@pytest.mark.slow
def test_reproduce_list_sweep_and_report(tmp_path):
    proc = mixcollapse("reproduce", "--list")
    assert proc.returncode == 0 and "fig1" in proc.stdout and "table2" in proc.stdout
    assert_one_line(
        mixcollapse("sweep", "--preset", "nope", "--out", str(tmp_path / "s")),
        "mixcollapse sweep: error: no preset or YAML file 'nope'",
    )
    assert_one_line(mixcollapse("report", str(tmp_path / "none")), "mixcollapse report: error:")


@pytest.mark.slow
def test_theory(tmp_path):
    proc = mixcollapse("theory", "--json", "--no-joint", "--out", str(tmp_path), *SMALL_THEORY)
    assert proc.returncode == 0, proc.stderr
    assert "mc_loss" in json.loads(proc.stdout)
    assert_one_line(mixcollapse("theory", "--alpha", "0", "--no-joint"), "mixcollapse theory: error:")
