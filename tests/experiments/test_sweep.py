"""Sweeps: runs spread over slots, never redone, resumed, pruned, repeated over seeds."""

from __future__ import annotations

import json

import pytest

from mixcollapse.config import load_config
from mixcollapse.experiments.grid import parse_grid
from mixcollapse.experiments.launch import inprocess_runner, make_slots, subprocess_runner
from mixcollapse.experiments.sweep import check_job_dir, run_sweep
from mixcollapse.training.rundir import append_metrics, prepare_run_dir
from reference import read_sweep
from sweep_stub import StubRunner

DIGITS = (
    "data.train_limit=256",
    "train.batch_size=64",
    "model.hidden=16",
    "train.progress=false",
    "train.epochs=2",
    "train.checkpoint_every=0",
)


def configure(hyper):
    return load_config("digits", [*DIGITS, *hyper])


def test_sweep_spreads_runs_over_gpus_and_picks_the_best(tmp_path):
    grid = parse_grid(["train.lr=logspace(0.01,0.25,6)"])
    acc = {0.01: 0.2, 0.25: 0.9}
    runner = StubRunner(accuracy=lambda job, epoch: acc.get(load_config(job.config_path).train.lr, 0.5), delay=0.05)
    result = run_sweep(
        tmp_path / "s", grid, configure, slots=make_slots(["0", "1", "2"], 1), runner=runner, log=lambda s: None
    )
    assert len(runner.calls) == 6 and len({name for name, _ in runner.calls}) == 6
    assert 1 < runner.max_active <= 3
    assert result["complete"] and result["best"]["name"] == "lr=0.25" and result["best"]["test_accuracy"] == 0.9
    assert result["best"]["overrides"] == ["train.lr=0.25"]
    saved = read_sweep(tmp_path / "s")
    assert saved["best"] == result["best"] and all(r["state"] == "finished" for r in saved["runs"])
    assert (tmp_path / "s" / "configs" / "lr=0.25.yaml").is_file()


def test_a_finished_run_is_never_redone_and_a_killed_sweep_continues(tmp_path):
    grid = parse_grid(["train.lr=[0.01,0.02,0.03,0.04]"])
    first = StubRunner(fail={"lr=0.03", "lr=0.04"})  # as if killed after two runs
    result = run_sweep(tmp_path / "s", grid, configure, runner=first, log=lambda s: None)
    assert len(first.calls) == 4 and not result["complete"]
    assert [r["state"] for r in result["runs"]] == ["finished", "finished", "failed", "failed"]
    assert result["best"]["name"] in ("lr=0.01", "lr=0.02")
    # A partial run (config and some epochs, no final checkpoint) is resumed, not skipped.
    cfg = configure(["train.lr=0.04"])
    prepare_run_dir(tmp_path / "s" / "lr=0.04", cfg, resume=True)
    append_metrics(tmp_path / "s" / "lr=0.04", {"epoch": 1, "test_accuracy": 0.3})
    second = StubRunner()
    result = run_sweep(tmp_path / "s", grid, configure, runner=second, log=lambda s: None)
    assert sorted(name for name, _ in second.calls) == ["lr=0.03", "lr=0.04"]
    assert result["complete"]
    third = StubRunner()
    run_sweep(tmp_path / "s", grid, configure, runner=third, log=lambda s: None)
    assert third.calls == []


def test_a_run_directory_of_another_config_is_refused(tmp_path):
    cfg = configure(["train.lr=0.01"])
    prepare_run_dir(tmp_path / "r", cfg)
    check_job_dir(tmp_path / "r", configure(["train.lr=0.02"]))  # no checkpoint yet: a failed start, taken over
    (tmp_path / "r" / "checkpoints" / "last.pt").write_bytes(b"")
    check_job_dir(tmp_path / "r", configure(["train.lr=0.01", "train.progress=true"]))  # resume-free field
    with pytest.raises(ValueError, match="holds a run of another config"):
        check_job_dir(tmp_path / "r", configure(["train.lr=0.02"]))


@pytest.mark.slow
def test_a_real_cpu_sweep_of_two_runs_through_subprocesses(tmp_path):
    grid = parse_grid(["train.lr=[0.02,0.1]"])
    result = run_sweep(tmp_path / "s", grid, configure, runner=subprocess_runner, log=lambda s: None)
    assert result["complete"], json.dumps(result, indent=1)
    for row in result["runs"]:
        assert row["epochs_done"] == 2 and 0 <= row["test_accuracy"] <= 1
        assert (tmp_path / "s" / row["log"]).is_file()
    assert result["best"]["test_accuracy"] == max(r["test_accuracy"] for r in result["runs"])
    stub = StubRunner()
    again = run_sweep(tmp_path / "s", grid, configure, runner=stub, log=lambda s: None)
    assert stub.calls == [] and again["best"] == result["best"]


def test_pruning_keeps_only_the_best_checkpoints_and_never_retrains(tmp_path):
    grid = parse_grid(["train.lr=[0.01,0.02,0.03]"])
    acc = {0.01: 0.4, 0.02: 0.8, 0.03: 0.6}
    runner = StubRunner(accuracy=lambda job, epoch: acc[load_config(job.config_path).train.lr])
    result = run_sweep(tmp_path / "s", grid, configure, runner=runner, log=lambda s: None, prune=True)
    assert result["best"]["name"] == "lr=0.02"
    for name in ("lr=0.01", "lr=0.03"):
        folder = tmp_path / "s" / name / "checkpoints"
        assert not list(folder.glob("*.pt")) and (folder / "PRUNED.txt").is_file()
    assert (tmp_path / "s" / "lr=0.02" / "checkpoints" / "last.pt").is_file()
    again = StubRunner()
    result = run_sweep(tmp_path / "s", grid, configure, runner=again, log=lambda s: None, prune=True)
    assert again.calls == [] and result["complete"] and result["best"]["name"] == "lr=0.02"


def test_the_in_process_launcher_writes_the_log_that_sweep_json_names(tmp_path):
    grid = parse_grid(["train.lr=[0.05]"])
    result = run_sweep(tmp_path / "s", grid, configure, runner=inprocess_runner, log=lambda s: None)
    (row,) = result["runs"]
    log = (tmp_path / "s" / row["log"]).read_text()
    assert row["state"] == "finished" and "[train] starting" in log and "epoch 2/2" in log and "[train] done" in log


def test_with_seeds_the_best_point_has_the_best_mean_and_keeps_every_seeds_checkpoint(tmp_path):
    from mixcollapse.experiments.sweep import format_sweep

    grid = parse_grid(["train.lr=[0.01,0.02]"])
    acc = {(0.01, 0): 0.9, (0.01, 1): 0.5, (0.02, 0): 0.8, (0.02, 1): 0.75}  # the best single run is not the best mean

    def accuracy(job, epoch):
        cfg = load_config(job.config_path)
        return acc[(cfg.train.lr, cfg.train.seed)]

    result = run_sweep(
        tmp_path / "s", grid, configure, runner=StubRunner(accuracy), log=lambda s: None, prune=True, seeds=[0, 1]
    )
    assert [r["name"] for r in result["runs"]] == ["lr=0.01", "lr=0.01-seed1", "lr=0.02", "lr=0.02-seed1"]
    assert [(r["point"], r["seed"]) for r in result["runs"]] == [
        ("lr=0.01", 0),
        ("lr=0.01", 1),
        ("lr=0.02", 0),
        ("lr=0.02", 1),
    ]
    points = {p["name"]: p for p in result["points"]}
    assert points["lr=0.01"]["test_accuracy"] == pytest.approx(0.7)
    assert points["lr=0.01"]["test_accuracy_std"] == pytest.approx(0.2828427, rel=1e-6)  # sample std of 0.9, 0.5
    best = result["best"]
    assert best["name"] == "lr=0.02" and best["test_accuracy"] == pytest.approx(0.775)
    assert best["run_dir"] == "lr=0.02" and best["overrides"] == ["train.lr=0.02"]  # no seed in the hyper-parameters
    assert load_config(tmp_path / "s" / "configs" / "lr=0.02-seed1.yaml").train.seed == 1
    for name in ("lr=0.02", "lr=0.02-seed1"):  # the best point's seeds keep their checkpoints, the others are pruned
        assert (tmp_path / "s" / name / "checkpoints" / "last.pt").is_file()
    for name in ("lr=0.01", "lr=0.01-seed1"):
        assert not list((tmp_path / "s" / name / "checkpoints").glob("*.pt"))
    assert "77.50 ± 3.54%" in format_sweep(result) and read_sweep(tmp_path / "s")["points"] == result["points"]
