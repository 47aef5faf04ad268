"""TensorBoard event files of a run, read back with TensorBoard's own event reader."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from mixcollapse.training.board import epoch_scalars
from mixcollapse.training.loop import train
from mixcollapse.training.rundir import read_metrics


def events(run) -> EventAccumulator:
    board = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    board.Reload()
    return board


def test_every_epoch_number_and_the_hyper_parameters_are_in_the_event_files(tmp_path, tiny_config):
    cfg = tiny_config("train.epochs=3", "mixing.alpha=0.4", "train.lr=0.05")
    run = train(cfg, tmp_path / "run")
    board, rows = events(run), read_metrics(run)
    for tag in (
        "train/loss",
        "train/accuracy",
        "test/loss",
        "test/accuracy",
        "test/ece",
        "lr",
        "classifier/etf_distance",
        "classifier/norm_cv",
        "classifier/cos_std",
    ):
        assert [e.step for e in board.Scalars(tag)] == [1, 2, 3], tag
    for row in rows:  # the same numbers as metrics.jsonl (event files hold float32)
        got = {tag: board.Scalars(tag)[row["epoch"] - 1].value for tag in epoch_scalars(row)}
        assert got == pytest.approx(epoch_scalars(row), rel=1e-6)
    start = board.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["mixing.alpha"].number_value == 0.4 and hparams["train.lr"].number_value == 0.05
    assert hparams["data.name"].string_value == "digits"


def test_a_resumed_run_purges_the_epochs_after_its_checkpoint(tmp_path, tiny_config):
    cfg = tiny_config("train.epochs=3", "train.checkpoint_every=0", "train.checkpoint_epochs=[1]")
    run = train(cfg, tmp_path / "run", stop_after_epoch=2)  # killed after epoch 2; the checkpoint is epoch 1's
    train(cfg, run, resume=True)  # epochs 2 and 3 again
    losses = events(run).Scalars("train/loss")
    assert [e.step for e in losses] == [1, 2, 3]
    assert [e.value for e in losses] == pytest.approx([r["train_loss"] for r in read_metrics(run)], rel=1e-6)


def test_the_analysed_configuration_is_an_image_at_its_epoch_and_the_board_can_be_off(tmp_path, tiny_config):
    from mixcollapse.analysis.run import analyze_run

    cfg = tiny_config(
        "train.epochs=2",
        "analysis.pairs_per_class_pair=10",
        "analysis.test_pairs=50",
        "analysis.recalibrate_batches=2",
        "data.test_limit=60",
    )
    run = train(cfg, tmp_path / "run")
    analyze_run(run, device="cpu", progress=False, draw=("configuration",))
    (image,) = events(run).Images("configuration/last")
    assert image.step == 2 and image.width > 300 and image.height > 300
    off = train(tiny_config("train.epochs=1", "train.tensorboard=false"), tmp_path / "off")
    assert not (off / "tensorboard").exists() and len(read_metrics(off)) == 1
