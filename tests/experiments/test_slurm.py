"""--launcher slurm: its options, and ``--cluster local`` (submitit's local executor, to try a set-up without Slurm).

Everything Slurm itself does (sbatch, sacct, time limits, requeues, scancel) is tested against a real cluster in
test_slurm_cluster.py."""

from __future__ import annotations

import json

import pytest

from conftest import untimed_rows
from mixcollapse.cli import main
from mixcollapse.config import load_config
from mixcollapse.experiments.grid import parse_grid
from mixcollapse.experiments.launch import inprocess_runner
from mixcollapse.experiments.slurm import SlurmOptions, check_options, default_minutes
from mixcollapse.experiments.sweep import run_sweep

pytest.importorskip("submitit")
SMALL = (
    "data.train_limit=256",
    "train.batch_size=64",
    "model.hidden=16",
    "train.progress=false",
    "train.epochs=2",
    "train.checkpoint_every=1",
    "train.threads=1",
)


@pytest.mark.slow  # two sweeps of two jobs, each job a fresh python: about 25 s
def test_a_sweep_submitted_as_jobs_equals_the_in_process_sweep_and_is_never_resubmitted(tmp_path, capsys):
    out = tmp_path / "jobs"
    argv = [
        "sweep",
        "--preset",
        "digits",
        "--out",
        str(out),
        "--grid",
        "train.lr=[0.05,0.1]",
        "--launcher",
        "slurm",
        "--cluster",
        "local",
        "--gpus-per-job",
        "0",
        "--cpus-per-task",
        "1",
        *SMALL,
    ]
    assert main(argv) == 0
    assert "[slurm] lr=0.05: job" in capsys.readouterr().err
    reference = run_sweep(
        tmp_path / "ref",
        parse_grid(["train.lr=[0.05,0.1]"]),
        lambda hyper: load_config("digits", [*SMALL, *hyper]),
        runner=inprocess_runner,
        log=lambda s: None,
    )
    result = json.loads((out / "sweep.json").read_text())
    assert result["complete"] and result["best"]["name"] == reference["best"]["name"]
    for got, want in zip(result["runs"], reference["runs"], strict=True):
        assert got["test_accuracy"] == want["test_accuracy"] and got["state"] == "finished"
        assert untimed_rows(out / got["run_dir"]) == untimed_rows(tmp_path / "ref" / want["run_dir"])
    assert list((out / "slurm").glob("*_submitted.pkl"))  # submitit's own files, beside the runs
    submitted = len(list((out / "slurm").glob("*_submitted.pkl")))
    assert main(argv) == 0  # finished runs are never submitted again
    assert len(list((out / "slurm").glob("*_submitted.pkl"))) == submitted


def test_options_are_checked_and_the_time_limit_follows_the_runs_estimate(tmp_path):
    with pytest.raises(ValueError, match="--cluster local runs on this machine: --nodes must be 1"):
        check_options(SlurmOptions(folder=tmp_path, cluster="local", nodes=2))
    with pytest.raises(ValueError, match="--gpus-per-job must be >= 0"):
        check_options(SlurmOptions(folder=tmp_path, gpus_per_node=-1))
    with pytest.raises(ValueError, match="--signal-delay >= 1"):
        check_options(SlurmOptions(folder=tmp_path, signal_delay_s=0))
    wrn = load_config("wrn-cifar10")
    # WRN-40-10 on CIFAR10 for 500 epochs is about 0.9 H100-hours (README): twice that, in minutes
    assert 100 <= default_minutes(wrn, 1) <= 130 and default_minutes(wrn, 8) == 60
    assert default_minutes(load_config("digits"), 1) == 240  # no estimate for the digits


def test_the_command_line_checks_the_slurm_options_before_anything_runs(tmp_path, capsys):
    assert (
        main(
            [
                "reproduce",
                "table2",
                "--scale",
                "tiny",
                "--out",
                str(tmp_path),
                "--launcher",
                "slurm",
                "--cluster",
                "local",
                "--nodes",
                "2",
            ]
        )
        == 2
    )
    assert "--cluster local runs on this machine: --nodes must be 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
