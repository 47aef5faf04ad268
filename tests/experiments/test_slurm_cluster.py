"""--launcher slurm against a real Slurm cluster: sbatch, squeue, sacct, scontrol and scancel through submitit.

The cluster is a private one on localhost (tests/slurm_cluster.py), started once for this module and stopped at
its end. To run the same tests against your own cluster instead, from a login node with a shared file system:
``MIXCOLLAPSE_TEST_SLURM=existing MIXCOLLAPSE_TEST_PARTITION=name pytest -m real --basetemp=SHARED tests/...``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import slurm_cluster
from conftest import untimed_rows
from mixcollapse.config import load_config
from mixcollapse.experiments.launch import Slot, run_jobs, run_state
from mixcollapse.experiments.slurm import SlurmOptions, slurm_runner
from mixcollapse.experiments.sweep import write_job
from mixcollapse.training.checkpoint import load_checkpoint
from mixcollapse.training.loop import train
from mixcollapse.training.rundir import read_metrics

pytest.importorskip("submitit")
pytestmark = pytest.mark.real

# Digits on one core at about 0.4 s an epoch. SHORT (about 10 s) is stopped by hand after a few epochs; LONG (about
# a minute) outlasts the time-limit warning, which a one-minute job gets between 10 and 40 s after its start (50 s
# before the limit; slurmctld looks at time limits every 30 s).
SHORT = ("train.progress=false", "train.epochs=24", "train.checkpoint_every=1", "train.threads=1", "model.hidden=16")
LONG = (*SHORT, "train.epochs=150")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running Slurm cluster: the private one, or yours with MIXCOLLAPSE_TEST_SLURM=existing."""
    patch = pytest.MonkeyPatch()
    if os.environ.get("MIXCOLLAPSE_TEST_SLURM") == "existing":
        partition = os.environ.get("MIXCOLLAPSE_TEST_PARTITION", "")
        yield slurm_cluster.Cluster(Path.cwd(), dict(os.environ), partition)
        return
    why = slurm_cluster.unavailable()
    if why is not None:
        if os.environ.get("MIXCOLLAPSE_REQUIRE_REAL") == "1":
            pytest.fail(f"MIXCOLLAPSE_REQUIRE_REAL=1 but no private Slurm cluster: {why}")
        pytest.skip(f"no private Slurm cluster: {why}")
    here = slurm_cluster.start(tmp_path_factory.mktemp("slurm-cluster"))
    patch.setenv("SLURM_CONF", here.env["SLURM_CONF"])
    try:
        yield here
    finally:
        patch.undo()
        slurm_cluster.stop(here)


def options(cluster, folder: Path, **kw) -> SlurmOptions:
    return SlurmOptions(folder=folder, partition=cluster.partition or None, gpus_per_node=0, cpus_per_task=1, **kw)


def same_weights(a: Path, b: Path) -> bool:
    x, y = (load_checkpoint(r / "checkpoints" / "last.pt")["model"] for r in (a, b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def job_ids(log: Path) -> list[str]:
    return re.findall(r"# \S+ \S+ job (\d+) \(process", log.read_text())


def accounting(cluster, job_id: str) -> list[str]:
    """Every state Slurm's accounting holds for the job, requeued attempts included (sacct --duplicates)."""
    out = cluster.run("sacct", "-X", "-n", "-D", "-P", "-o", "State", "-j", job_id)
    return [line.split()[0] for line in out.split("\n") if line.strip()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """SHORT, trained in this process without a stop: what every interrupted job must end at, bit for bit."""
    run = tmp_path_factory.mktemp("straight") / "run"
    train(load_config("digits", list(SHORT)), run)
    return run


def job_of(overrides, tmp_path: Path):
    cfg = load_config("digits", list(overrides))
    return write_job("run", cfg, tmp_path / "run", tmp_path / "run.yaml", tmp_path / "run.log")


def wait_for(what: str, ready, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s:.0f} s"
        time.sleep(0.5)


def test_a_tiny_reproduction_as_slurm_jobs_equals_the_in_process_one(cluster, tmp_path, real_fashionmnist):
    common = ["reproduce", "table2", "--scale", "tiny", "--datasets", "fashionmnist", "--data-root", real_fashionmnist]
    slurm = [*common, "--out", str(tmp_path / "slurm"), "--launcher", "slurm", "--gpus-per-job", "0"]
    slurm += ["--cpus-per-task", "1"] + (["--partition", cluster.partition] if cluster.partition else [])
    done = subprocess.run([sys.executable, "-m", "mixcollapse", *slurm], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    from mixcollapse.cli import main

    assert main([*common, "--out", str(tmp_path / "local"), "--launcher", "inprocess"]) == 0
    table = "tables/table2.json"
    assert json.loads((tmp_path / "slurm" / table).read_text()) == json.loads((tmp_path / "local" / table).read_text())
    runs = sorted(p.parent for p in (tmp_path / "local").rglob("metrics.jsonl"))
    assert len(runs) == 8  # the mixup sweeps' two learning rates, then baseline and α = 0.4, both architectures
    for run in runs:
        twin = tmp_path / "slurm" / run.relative_to(tmp_path / "local")
        assert untimed_rows(twin) == untimed_rows(run) and same_weights(twin, run), run
    ids = re.findall(r"\[slurm\] \S+: job (\d+)", done.stderr)
    assert len(ids) == 8 and all(accounting(cluster, i) == ["COMPLETED"] for i in ids)


def test_a_job_past_its_time_limit_is_requeued_and_resumes_to_the_uninterrupted_result(cluster, tmp_path):
    """--time 1: Slurm's warning (USR2, here 50 s before the limit) reaches submitit, whose checkpoint hook stops the
    training and requeues the job (scontrol requeue); the same job id runs again and resumes from the checkpoint."""
    job = job_of(LONG, tmp_path)
    cmd = [sys.executable, "-m", "mixcollapse", "train", "--preset", str(job.config_path), "--out"]
    cmd.append(str(tmp_path / "ref"))
    with open(tmp_path / "ref.log", "w") as ref_log:  # on the other core, meanwhile
        straight = subprocess.Popen(cmd, stdout=ref_log, stderr=subprocess.STDOUT)
    code = slurm_runner(options(cluster, tmp_path / "submitit", time_min=1, signal_delay_s=50))(job, Slot())
    log = job.log_path.read_text()
    assert code == 0, log[-3000:]
    (job_id,) = set(job_ids(job.log_path))
    assert len(job_ids(job.log_path)) >= 2 and "[train] resuming after epoch" in log, log[-3000:]
    assert accounting(cluster, job_id)[-1] == "COMPLETED" and "REQUEUED" in accounting(cluster, job_id)
    assert straight.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()[-2000:]
    assert untimed_rows(job.run_dir) == untimed_rows(tmp_path / "ref") and same_weights(job.run_dir, tmp_path / "ref")


def test_a_job_requeued_by_hand_resumes_to_the_uninterrupted_result(cluster, tmp_path, straight):
    """``scontrol requeue`` (what a preemption with PreemptMode=REQUEUE does): Slurm sends SIGTERM to every process of
    the job, the training saves its last epoch, the job waits to be killed without writing a result, runs again."""
    job = job_of(SHORT, tmp_path)
    result: list[int] = []
    runner = slurm_runner(options(cluster, tmp_path / "submitit"))
    waiting = threading.Thread(target=lambda: result.append(runner(job, Slot())))
    waiting.start()
    wait_for("three epochs", lambda: job.run_dir.is_dir() and len(read_metrics(job.run_dir)) >= 3)
    (job_id,) = set(job_ids(job.log_path))
    cluster.run("scontrol", "requeue", job_id)
    waiting.join(timeout=300)
    log = job.log_path.read_text()
    assert result == [0], log[-3000:]
    assert len(job_ids(job.log_path)) == 2 and "stopped by Slurm (SIGTERM)" in log, log[-3000:]
    assert "[train] resuming after epoch" in log and accounting(cluster, job_id)[-1] == "COMPLETED"
    assert untimed_rows(job.run_dir) == untimed_rows(straight) and same_weights(job.run_dir, straight)


def test_a_cancelled_job_leaves_its_run_resumable_and_the_rerun_submits_only_it(cluster, tmp_path, straight):
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "mixcollapse", "sweep", "--preset", "digits", "--out", str(out)]
    argv += ["--grid", "train.lr=[0.05,0.1]", "--launcher", "slurm", "--gpus-per-job", "0", "--cpus-per-task", "1"]
    argv += [*(["--partition", cluster.partition] if cluster.partition else []), *SHORT]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = out / "lr=0.1"  # the preset's learning rate: SHORT, as `straight` trained it
    wait_for("two epochs", lambda: run.is_dir() and len(read_metrics(run)) >= 2)
    (job_id,) = set(job_ids(out / "logs" / "lr=0.1.log"))
    cluster.run("scancel", job_id)
    _, err = first.communicate(timeout=300)
    assert first.returncode != 0
    assert re.search(rf"\[slurm\] lr=0.1: job {job_id} ended CANCELLED.*; log: \S+lr=0.1.log", err), err[-3000:]
    assert "lr=0.05: finished" in err and (run / "checkpoints" / "last.pt").is_file()
    submitted = set((out / "slurm").glob("*_submitted.pkl"))
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(set((out / "slurm").glob("*_submitted.pkl")) - submitted) == 1  # only lr=0.1 went back to Slurm
    assert (
        "1 of 2 runs already finished" in again.stderr
        and "[train] resuming after epoch" in (out / "logs" / "lr=0.1.log").read_text()
    )
    assert untimed_rows(run) == untimed_rows(straight) and same_weights(run, straight)


def test_a_failed_job_is_reported_with_its_slurm_state_and_log_and_blocks_nothing(cluster, tmp_path):
    good = write_job(
        "good",
        load_config("digits", ["train.progress=false", "train.epochs=1", "train.threads=1", "model.hidden=8"]),
        tmp_path / "good",
        tmp_path / "good.yaml",
        tmp_path / "good.log",
    )
    bad = write_job("bad", load_config("digits"), tmp_path / "bad", tmp_path / "bad.yaml", tmp_path / "bad.log")
    bad.config_path.write_text(bad.config_path.read_text().replace("epochs: ", "epochs: -", 1))  # not a valid config
    lines: list[str] = []
    runner = slurm_runner(options(cluster, tmp_path / "submitit"), lines.append)
    status = run_jobs([bad, good], [Slot(), Slot()], runner=runner, log=lines.append)
    assert status["bad"]["state"] == "failed" and status["good"]["state"] == "finished"
    (report,) = [line for line in lines if line.startswith("[slurm] bad: job") and "ended" in line]
    assert re.search(r"ended (FAILED|COMPLETED)\b", report) and str(bad.log_path) in report, lines
    log = bad.log_path.read_text()  # the training's own one-line error, then why the job ended
    assert "train.epochs=-" in log and "RuntimeError: training exited with code 2" in log, log[-2000:]
    assert run_state(good.run_dir, good.epochs) == "finished"


def test_a_halving_sweep_as_slurm_jobs_stops_runs_at_their_rungs_and_equals_the_in_process_one(cluster, tmp_path):
    """--sweep halving: 3 points to epoch 3 (the first rung of 27 epochs), the best one on to 9 and to 27; each rung
    a Slurm job (`train --until-epoch`), the run's own checkpoint carrying it to the next."""
    from mixcollapse.cli import main

    settings = ["train.progress=false", "train.epochs=27", "train.threads=1", "model.hidden=16"]
    common = ["sweep", "--preset", "digits", "--grid", "train.lr=[0.02,0.1,0.5]", "--sweep", "halving"]
    argv = [sys.executable, "-m", "mixcollapse", *common, "--out", str(tmp_path / "slurm"), "--launcher", "slurm"]
    argv += [
        "--gpus-per-job",
        "0",
        "--cpus-per-task",
        "1",
        *(["--partition", cluster.partition] * bool(cluster.partition)),
    ]
    done = subprocess.run([*argv, *settings], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*common, "--out", str(tmp_path / "local"), "--launcher", "inprocess", *settings]) == 0
    got, want = (json.loads((tmp_path / d / "sweep.json").read_text()) for d in ("slurm", "local"))
    assert got["halving"] == want["halving"] and got["best"] == want["best"]
    assert got["halving"]["rungs"] == [3, 9, 27] and [len(d["kept"]) for d in got["halving"]["decisions"]] == [1, 1]
    for row in got["runs"]:
        assert untimed_rows(tmp_path / "slurm" / row["run_dir"]) == untimed_rows(tmp_path / "local" / row["run_dir"])
        assert row["epochs_done"] == (27 if row["name"] == got["best"]["name"] else 3)
    ids = re.findall(r"\[slurm\] \S+: job (\d+)", done.stderr)
    assert len(ids) == 3 + 1 + 1 and all(accounting(cluster, i) == ["COMPLETED"] for i in ids)
