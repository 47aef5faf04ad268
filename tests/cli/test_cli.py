"""The command line, in process through ``main([...])``: bad input gives one clear line on stderr, exit code 2."""

import json

import pytest

from conftest import TINY_OVERRIDES, TINY_RUN_SETTINGS
from mixcollapse.cli import main


def run(*argv: str) -> int:
    """``mixcollapse ARGV`` in process; its exit code (argparse's errors exit through SystemExit)."""
    try:
        return main(list(argv))
    except SystemExit as stop:
        return stop.code


def one_line_error(capsys, *argv: str, after_progress: bool = False) -> str:
    """Run ``mixcollapse ARGV``, expect exit code 2, and return its single stderr line; ``after_progress``: an
    error that can only show during the work (a divergence, a full disk) is the last line, after the progress."""
    code = run(*argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert code == 2 and "Traceback" not in err and len(errors) == 1, err
    assert lines[-1] == errors[0] and (after_progress or len(lines) == 1), err
    return lines[-1]


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("data.name=imagenet", ["data.name='imagenet' is not one of", "cifar10"]),
        ("mixing.alpha=-0.5", ["mixing.alpha=-0.5 must be >= 0"]),
        ("analysis.classes=[0,1,10]", ["index 10 out of range", "0..9"]),
    ],
)
def test_train_rejects_bad_config_values(tmp_path, capsys, override, fragments):
    line = one_line_error(capsys, "train", "--out", str(tmp_path / "run"), override)
    assert line.startswith("mixcollapse train: error:") and all(f in line for f in fragments)
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.parametrize(
    "until, settings, fragment",
    [
        ("9", ["train.epochs=4"], "--until-epoch 9 is not an epoch of this run (1 to train.epochs=4)"),
        ("3", ["train.epochs=4", "train.eval_every=2"], "pick a multiple of 2 or the last epoch, 4"),
    ],
)
def test_train_until_an_epoch_that_does_not_evaluate_is_refused(tmp_path, capsys, until, settings, fragment):
    line = one_line_error(capsys, "train", "--out", str(tmp_path / "run"), "--until-epoch", until, *settings)
    assert line.startswith("mixcollapse train: error:") and fragment in line
    assert not (tmp_path / "run").exists()


def test_missing_dataset_offline_names_the_files(tmp_path, capsys):
    line = one_line_error(
        capsys,
        "train",
        "--out",
        str(tmp_path / "run"),
        "--data-root",
        str(tmp_path / "nodata"),
        "data.name=cifar10",
        "data.download=false",
        "model.name=small",
    )
    assert "cifar-10-batches-py" in line and "data_batch_1" in line


def test_unknown_preset_and_analyze_of_a_missing_run(tmp_path, capsys):
    assert "no preset or YAML file 'nope'" in one_line_error(
        capsys, "train", "--preset", "nope", "--out", str(tmp_path / "r")
    )
    assert one_line_error(capsys, "analyze", str(tmp_path / "missing")).startswith("mixcollapse analyze: error:")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--no-such-flag"],
        ["theory", "--classes", "1"],
        ["frobnicate"],
        ["reproduce", "fig1", "--scale", "huge"],
    ],
)
def test_argument_errors_are_one_line_with_exit_2(capsys, argv):
    line = one_line_error(capsys, *argv)
    assert "error:" in line and "--help" in line


def test_a_sweep_at_the_cpu_scale_asks_for_its_grid(tmp_path, capsys):
    line = one_line_error(
        capsys, "sweep", "--preset", "wrn-fashionmnist", "--scale", "cpu", "--out", str(tmp_path / "s")
    )
    assert "--scale cpu has no default grid" in line and "pass --grid" in line
    assert not (tmp_path / "s").exists()


def test_report_of_a_missing_directory(tmp_path, capsys):
    assert one_line_error(capsys, "report", str(tmp_path / "none")).startswith("mixcollapse report: error:")


def test_a_diverging_run_ends_in_one_line_naming_the_epoch_and_settings(tmp_path, capsys):
    line = one_line_error(
        capsys,
        "train",
        "--out",
        str(tmp_path / "run"),
        *TINY_OVERRIDES,
        "train.epochs=2",
        "train.lr=1e6",
        after_progress=True,
    )
    assert line.startswith("mixcollapse train: error: training diverged in epoch 1 (train loss ")
    assert "train.lr=1e+06" in line and "mixing.alpha=1" in line and "lower train.lr" in line


def test_output_paths_the_system_refuses_are_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    line = one_line_error(capsys, "train", "--out", str(tmp_path / "a_file" / "run"), *TINY_OVERRIDES)
    assert "Not a directory" in line and "a part of that path is a file" in line
    line = one_line_error(capsys, "theory", "--out", str(tmp_path / "a_file"), "--no-joint", "--samples", "50")
    assert "is a file; give a folder" in line
    assert (tmp_path / "a_file").read_text() == "x"


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tiny_run, capsys, full_disk, monkeypatch):
    before = (tiny_run / "checkpoints" / "last.pt").read_bytes()
    full_disk(8192)  # config.yaml fits, a checkpoint does not
    line = one_line_error(
        capsys, "train", "--out", str(tiny_run), "--resume", *TINY_OVERRIDES, *TINY_RUN_SETTINGS, after_progress=True
    )
    monkeypatch.undo()
    assert "No space left on device" in line and "rerun with --resume" in line
    assert (tiny_run / "checkpoints" / "last.pt").read_bytes() == before
    assert not list((tiny_run / "checkpoints").glob(".*.tmp"))


def test_a_checkpoint_whose_weights_do_not_fit_is_one_line(tiny_run, capsys):
    import torch

    path = tiny_run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["config"]["model"]["hidden"] = 48
    torch.save(state, path)
    line = one_line_error(capsys, "analyze", str(tiny_run))
    assert "weights do not fit the model its config describes" in line and "size mismatch" in line


def test_overrides_are_accepted_anywhere_on_the_line_in_their_order():
    from mixcollapse.cli.main import build_parser, parse_args

    args = parse_args(build_parser(), ["train", "train.lr=0.1", "--out", "x", "train.lr=0.2", "--resume", "a.b=[1,2]"])
    assert args.overrides == ["train.lr=0.1", "train.lr=0.2", "a.b=[1,2]"] and args.out == "x" and args.resume
    args = parse_args(build_parser(), ["analyze", "RUN", "--checkpoint", "F", "analysis.classes=[0,3,8]"])
    assert args.run == "RUN" and args.checkpoint == "F" and args.overrides == ["analysis.classes=[0,3,8]"]


def test_help_lists_the_presets_and_shows_real_defaults_only(capsys):
    assert run("train", "--help") == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "wrn-fashionmnist-cpu" in text and "vit-fashionmnist-cpu" in text
    assert run("theory", "--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: 10)" in text


def test_version(capsys):
    assert run("--version") == 0 and capsys.readouterr().out.startswith("mixcollapse ")


def test_train_then_analyze_print_progress_and_a_short_table(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--out", str(run_dir), *TINY_OVERRIDES, "train.epochs=1"]) == 0
    printed = capsys.readouterr().err  # progress on stderr
    assert "[train] starting" in printed and "epoch 1/1" in printed  # the training loop's log lines, shown
    assert f"[train] done: metrics in {run_dir / 'metrics.jsonl'}" in printed and "mixcollapse analyze" in printed
    assert (
        main(
            [
                "analyze",
                str(run_dir),
                "--threads",
                "1",
                "analysis.classes=[0,3,8]",  # overrides after options
                "analysis.pairs_per_class_pair=10",
                "analysis.test_pairs=0",
                "analysis.nc_samples=100",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "classes: 0 (0), 3 (3), 8 (8); 60 mixup pairs" in out and "neural_collapse:" in out and "figures:" in out
    assert "[analyze] neural collapse on the training data" in err and "[analyze]" not in out
    summary = json.loads((run_dir / "analysis" / "last_classes-0-3-8" / "analysis.json").read_text())
    assert summary["neural_collapse"]["num_samples"] == 100
    assert not (run_dir / "analysis" / "last").exists()


def test_analyze_json_prints_the_headline_alone(tmp_path, capsys, monkeypatch):
    import types

    from mixcollapse.analysis import run

    summary = {"classes": [0, 1, 2], "num_pairs": 60, "pair_prob_mae": 0.1, "figures": ["a.png"], "calibration": {}}
    monkeypatch.setattr(run, "analyze_run", lambda *args, **kwargs: types.SimpleNamespace(summary=summary))
    assert main(["analyze", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"num_pairs": 60, "pair_prob_mae": 0.1}  # scalars only
