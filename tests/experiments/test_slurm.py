"""--launcher slurm through submitit's local executor: real job processes with time limits and requeues, no Slurm."""

from __future__ import annotations

import json

import pytest
import torch

from mixcollapse.cli import main
from mixcollapse.config import load_config
from mixcollapse.experiments.grid import parse_grid
from mixcollapse.experiments.launch import inprocess_runner
from mixcollapse.experiments.slurm import SlurmOptions, check_options, default_minutes
from mixcollapse.experiments.sweep import run_sweep
from mixcollapse.training.checkpoint import load_checkpoint
from mixcollapse.training.rundir import read_metrics

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


def rows(run):
    return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in read_metrics(run)]


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
        assert rows(out / got["run_dir"]) == rows(tmp_path / "ref" / want["run_dir"])
    assert list((out / "slurm").glob("*_submitted.pkl"))  # submitit's own files, beside the runs
    submitted = len(list((out / "slurm").glob("*_submitted.pkl")))
    assert main(argv) == 0  # finished runs are never submitted again
    assert len(list((out / "slurm").glob("*_submitted.pkl"))) == submitted


@pytest.mark.slow  # one run, interrupted once: about 20 s
def test_a_preempted_job_is_requeued_and_resumes_to_the_uninterrupted_result(tmp_path):
    """The signal Slurm sends before a time limit or a preemption (USR2), sent once the run has a checkpoint: submitit
    calls the job's checkpoint hook, which stops the training, and requeues the job, which resumes the run."""
    import os
    import re
    import signal
    import time

    import submitit

    from mixcollapse.experiments.slurm import TrainingJob
    from mixcollapse.experiments.sweep import write_job
    from mixcollapse.training.loop import train

    cfg = load_config(
        "digits",
        ["train.progress=false", "train.epochs=12", "train.checkpoint_every=1", "train.threads=1", "model.hidden=16"],
    )
    run = tmp_path / "run"
    job = write_job("run", cfg, run, tmp_path / "run.yaml", tmp_path / "run.log")
    executor = submitit.LocalExecutor(str(tmp_path / "submitit"), max_num_timeout=3)
    executor.update_parameters(timeout_min=10, signal_delay_s=5)
    submitted = executor.submit(TrainingJob(job, 0, 1))
    deadline = time.monotonic() + 120
    while not ((run / "checkpoints" / "last.pt").is_file() and len(read_metrics(run)) >= 3):
        assert time.monotonic() < deadline and submitted.state == "RUNNING", job.log_path.read_text()[-2000:]
        time.sleep(0.2)
    os.kill(int(re.findall(r"\(process (\d+)\)", job.log_path.read_text())[-1]), signal.SIGUSR2)
    submitted.result()
    log = job.log_path.read_text()
    assert len(re.findall(r"\(process \d+\)", log)) == 2 and "[train] resuming after epoch" in log, log[-3000:]
    straight = train(cfg, tmp_path / "straight")
    assert rows(run) == rows(straight)
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt")["model"] for r in (run, straight))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_options_are_checked_and_the_time_limit_follows_the_runs_estimate(tmp_path):
    with pytest.raises(ValueError, match="--cluster local runs on this machine: --nodes must be 1"):
        check_options(SlurmOptions(folder=tmp_path, cluster="local", nodes=2))
    with pytest.raises(ValueError, match="--gpus-per-job must be >= 0"):
        check_options(SlurmOptions(folder=tmp_path, gpus_per_node=-1))
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


@pytest.mark.slow  # a tiny table through the slurm launcher's plumbing: about 15 s
def test_reproduce_hands_every_training_to_the_slurm_runner(tmp_path, monkeypatch):
    from mixcollapse.experiments import slurm
    from mixcollapse.experiments.launch import Launch
    from mixcollapse.experiments.reproduce import reproduce

    calls = []

    def fake_runner(options, log=None):
        def run(job, slot):
            calls.append((job.name, slot))
            return inprocess_runner(job, slot)

        return run

    monkeypatch.setattr(slurm, "slurm_runner", fake_runner)
    options = SlurmOptions(folder=tmp_path / "slurm", cluster="local", gpus_per_node=0, max_jobs=3)
    (manifest,) = reproduce(
        "table2",
        scale="tiny",
        datasets=["fashionmnist"],
        out=tmp_path / "out",
        launch=Launch("slurm", slurm=options),
        log=lambda line: None,
    )
    trained = {name.split("/")[0] for name, _ in calls}
    assert trained >= {cell["run"] for cell in manifest["tables"][0]["cells"]} | {"wrn-fashionmnist-mixup"}
    assert len(calls) == len({name for name, _ in calls})  # each training handed over once
