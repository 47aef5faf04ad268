"""Successive halving: its rungs, who goes on, what it costs, and sweeps that halve (resumable, any launcher)."""

from __future__ import annotations

import json

import pytest

from conftest import untimed_rows
from mixcollapse.config import load_config
from mixcollapse.experiments.cost import FLOPS_PER_IMAGE, config_flops, sweep_flops
from mixcollapse.experiments.grid import parse_grid
from mixcollapse.experiments.halving import halving_fraction, halving_rungs, survivors, trained_epochs
from mixcollapse.experiments.launch import inprocess_runner, subprocess_runner
from mixcollapse.experiments.paper import RunKey
from mixcollapse.experiments.scales import run_config
from mixcollapse.experiments.sweep import format_sweep, run_sweep
from sweep_stub import StubRunner

DIGITS = ("data.train_limit=256", "train.batch_size=64", "model.hidden=16", "train.progress=false")


def configure(hyper, epochs=9):
    return load_config("digits", [*DIGITS, f"train.epochs={epochs}", "train.checkpoint_every=0", *hyper])


def test_the_rungs_are_a_ninth_a_third_and_the_end_at_epochs_that_evaluate():
    assert halving_rungs(500) == [56, 167, 500]  # 55.6 and 166.7 rounded
    assert halving_rungs(300, eval_every=20) == [40, 100, 300]  # 33.3 -> the nearest multiple of 20
    assert halving_rungs(3) == [1, 3]  # 3/9 -> at least one epoch, and 3/3 = 1 again
    assert halving_rungs(10, eval_every=5) == [5, 10]


def test_the_best_third_goes_on_ties_to_the_earlier_point_and_a_failed_point_never():
    scores = [("a", 0.5), ("b", 0.9), ("c", None), ("d", 0.9), ("e", 0.1), ("f", 0.7), ("g", 0.2)]
    assert survivors(scores) == ["b", "d", "f"]  # ceil(7 / 3) = 3, in grid order
    assert survivors([("a", 0.3), ("b", 0.3), ("c", 0.3), ("d", 0.3)]) == ["a", "b"]
    assert survivors([("a", 0.3), ("b", 0.4)]) == ["b"]
    assert survivors([("a", None), ("b", None)]) == []


def test_ten_points_train_a_third_of_the_full_sweeps_epochs():
    # By hand: 10 points to epoch 1, 4 of them on to epoch 3, 2 of those on to 9: 10 + 4*2 + 2*6 = 30 of 90 epochs.
    assert trained_epochs(10, [1, 3, 9]) == [(10, 1), (4, 3), (2, 9)]
    assert halving_fraction(10, 9) == pytest.approx(30 / 90)


def test_the_gpu_estimate_of_a_halving_sweep_adds_up_its_rungs():
    key = RunKey("wrn", "cifar10", "mixup")
    cfg = run_config(key, "full")
    assert (cfg.train.epochs, cfg.train.eval_every, cfg.train.batch_size) == (500, 1, 128)
    train_f, eval_f = FLOPS_PER_IMAGE[("wrn", "cifar10")]
    per_epoch = (50_000 // 128) * 128 * train_f + 10_000 * eval_f  # every epoch evaluates the test set

    # 10 points to epoch 56, the best 4 on to 167, the best 2 of those to 500
    want = (10 * 56 + 4 * (167 - 56) + 2 * (500 - 167)) * per_epoch
    assert sweep_flops(key, 10, "halving") == pytest.approx(want, rel=1e-12)
    assert sweep_flops(key, 10, "full") == pytest.approx(10 * 500 * per_epoch, rel=1e-12)
    assert config_flops(cfg, until=56) == pytest.approx(56 * per_epoch, rel=1e-12)


def _learning(job, epoch):
    """Test accuracy that rises with the epoch, fast for large learning rates and higher in the end for 0.03."""
    lr = load_config(job.config_path).train.lr
    final = {0.01: 0.80, 0.03: 0.95, 0.1: 0.90, 0.3: 0.85, 1.0: 0.60, 3.0: 0.50}[lr]
    speed = {0.01: 0.1, 0.03: 0.3, 0.1: 0.6, 0.3: 0.9, 1.0: 1.0, 3.0: 1.0}[lr]
    return final * min(1.0, speed * epoch / 3 + 0.2)


GRID = {"train.lr": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]}


def test_a_halving_sweep_trains_every_point_to_a_ninth_and_the_best_third_on(tmp_path):
    runner = StubRunner(_learning)
    result = run_sweep(tmp_path / "s", GRID, configure, runner=runner, log=lambda s: None, method="halving")
    assert [job.until for job in runner.jobs] == [1] * 6 + [3] * 2 + [None]
    # epoch 1: 0.3 (0.85 * 0.5 = 0.425) and 0.1 (0.9 * 0.4 = 0.36) lead; epoch 3: 0.3 (0.85) beats 0.1 (0.72)
    states = {r["name"]: (r["state"], r["epochs_done"]) for r in result["runs"]}
    assert states == {
        "lr=0.01": ("halted", 1),
        "lr=0.03": ("halted", 1),
        "lr=0.1": ("halted", 3),
        "lr=0.3": ("finished", 9),
        "lr=1": ("halted", 1),
        "lr=3": ("halted", 1),
    }
    assert result["complete"] and result["best"]["name"] == "lr=0.3" and result["method"] == "halving"
    decisions = result["halving"]["decisions"]
    assert [(d["epoch"], d["kept"]) for d in decisions] == [(1, ["lr=0.1", "lr=0.3"]), (3, ["lr=0.3"])]
    assert decisions[0]["test_accuracy"]["lr=0.01"] == pytest.approx(0.80 * (0.1 / 3 + 0.2))
    assert "after epoch 1: 2 of 6 go on (lr=0.1, lr=0.3)" in format_sweep(result)
    # the full sweep of the same grid picks 0.03 (0.95 at the end), slow to rise: the bias halving trades for its cost
    full = run_sweep(tmp_path / "f", GRID, configure, runner=StubRunner(_learning), log=lambda s: None)
    assert full["best"]["name"] == "lr=0.03"


def test_pruning_deletes_a_halted_runs_checkpoints_at_once_and_a_rerun_trains_nothing(tmp_path):
    def sweep(runner):
        return run_sweep(
            tmp_path / "s", GRID, configure, runner=runner, log=lambda s: None, method="halving", prune=True
        )

    result = sweep(StubRunner(_learning))
    for row in result["runs"]:
        folder = tmp_path / "s" / row["run_dir"] / "checkpoints"
        kept = row["name"] == result["best"]["name"]
        assert bool(list(folder.glob("*.pt"))) == kept and (folder / "PRUNED.txt").is_file() != kept
    again = StubRunner(_learning)
    rerun = sweep(again)
    assert again.jobs == [] and rerun["best"] == result["best"] and rerun["halving"] == result["halving"]


class Killed(StubRunner):
    """Stops the whole sweep (as Ctrl-C would) when it is asked for its ``at``-th job."""

    def __init__(self, at: int):
        super().__init__(_learning)
        self.at = at

    def __call__(self, job, slot):
        if len(self.calls) + 1 == self.at:
            raise KeyboardInterrupt
        return super().__call__(job, slot)


def test_a_killed_halving_sweep_resumes_to_the_same_pick_without_training_anything_twice(tmp_path):
    whole = run_sweep(
        tmp_path / "whole", GRID, configure, runner=StubRunner(_learning), log=lambda s: None, method="halving"
    )
    with pytest.raises(KeyboardInterrupt):  # killed at the second rung's second job
        run_sweep(tmp_path / "s", GRID, configure, runner=Killed(at=8), log=lambda s: None, method="halving")
    again = StubRunner(_learning)
    result = run_sweep(tmp_path / "s", GRID, configure, runner=again, log=lambda s: None, method="halving")
    assert [(job.name, job.until) for job in again.jobs] == [("lr=0.3", 3), ("lr=0.3", None)]
    for key in ("best", "complete", "halving"):
        assert result[key] == whole[key]
    assert [r["state"] for r in result["runs"]] == [r["state"] for r in whole["runs"]]


def test_real_runs_halted_at_a_rung_are_the_first_epochs_of_the_full_sweeps_runs(tmp_path):
    """A halving sweep then a full sweep in the same folder: the full sweep continues the halted runs from
    their rung checkpoints and ends with the metrics of a full sweep trained from scratch."""
    grid = parse_grid(["train.lr=[0.02,0.1,0.5]"])
    three = lambda hyper: configure(hyper, epochs=3)  # noqa: E731 - rungs at epochs 1 and 3
    halving = run_sweep(tmp_path / "s", grid, three, runner=inprocess_runner, log=lambda s: None, method="halving")
    assert [r["state"] for r in halving["runs"]].count("halted") == 2
    (kept,) = halving["halving"]["decisions"][0]["kept"]
    at_one = {r["name"]: untimed_rows(tmp_path / "s" / r["run_dir"])[0]["test_accuracy"] for r in halving["runs"]}
    assert kept == max(at_one, key=at_one.get) and halving["best"]["name"] == kept
    full = run_sweep(tmp_path / "s", grid, three, runner=inprocess_runner, log=lambda s: None)
    scratch = run_sweep(tmp_path / "f", grid, three, runner=inprocess_runner, log=lambda s: None)
    assert full["complete"] and full["best"] == {**scratch["best"]}
    for row in full["runs"]:
        assert untimed_rows(tmp_path / "s" / row["run_dir"]) == untimed_rows(tmp_path / "f" / row["run_dir"])


@pytest.mark.slow  # four trainings, each a fresh python: about 20 s
def test_a_halving_sweep_through_subprocesses_stops_each_run_at_its_rung(tmp_path):
    grid = parse_grid(["train.lr=[0.02,0.1,0.5]"])
    three = lambda hyper: configure(hyper, epochs=3)  # noqa: E731
    result = run_sweep(tmp_path / "s", grid, three, runner=subprocess_runner, log=lambda s: None, method="halving")
    assert result["complete"], json.dumps(result, indent=1)
    reference = run_sweep(tmp_path / "r", grid, three, runner=inprocess_runner, log=lambda s: None, method="halving")
    assert result["halving"] == reference["halving"] and result["best"] == reference["best"]
    for row in result["runs"]:
        log = (tmp_path / "s" / row["log"]).read_text()
        assert ("--until-epoch 1" in log) and (("stopped at epoch 1 of 3" in log) or row["state"] == "finished")
