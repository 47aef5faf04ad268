"""The command line: bad input gives one clear line on stderr, exit code 2, and no traceback."""

import subprocess
import sys

import pytest

from mixcollapse.cli import main


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mixcollapse", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def assert_one_clear_line(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("data.name=imagenet", ["data.name='imagenet' is not one of", "cifar10"]),
        ("mixup.alpha=-0.5", ["mixup.alpha=-0.5 must be >= 0"]),
        ("analysis.classes=[0,1,10]", ["index 10 out of range", "0..9"]),
    ],
)
def test_train_rejects_bad_config_values(tmp_path, override, fragments):
    result = run_cli("train", "--out", str(tmp_path / "run"), override)
    assert_one_clear_line(result, "mixcollapse train: error:", *fragments)
    assert not (tmp_path / "run").exists()  # nothing written


def test_missing_dataset_offline_names_the_files(tmp_path):
    result = run_cli("train", "--out", str(tmp_path / "run"), "--data-root", str(tmp_path / "nodata"),
                     "data.name=cifar10", "data.download=false", "model.name=small")
    assert_one_clear_line(result, "cifar-10-batches-py", "data_batch_1")


def test_unknown_preset_and_analyze_of_a_missing_run(tmp_path, capsys):
    assert main(["train", "--preset", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "no preset or YAML file 'nope'" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mixcollapse analyze: error:") and "\n" not in err


def test_argparse_errors_exit_2():
    result = run_cli("train", "--no-such-flag")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr
