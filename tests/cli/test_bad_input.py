"""A table of bad input, each through ``mixcollapse`` in process: exit code 2, exactly one line on stderr, no
traceback, and no file written or changed (the whole working folder is compared before and after).

Cases span CLI arguments, config overrides, preset files, run directories, checkpoints, theory parameters,
sweep grids and output paths. ``{tmp}`` is the test's folder; ``{run}`` a copy of a tiny trained run; the
files each case needs are written by ``SETUP`` before the snapshot is taken.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch

from conftest import TINY_OVERRIDES, TINY_RUN_SETTINGS
from mixcollapse.cli import main

TINY = list(TINY_OVERRIDES)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _corrupt_checkpoint(run: Path, how: str) -> None:
    path = run / "checkpoints" / "last.pt"
    if how == "garbage":
        path.write_bytes(os.urandom(4096))
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "foreign":
        torch.save({"state_dict": {}}, path)
    elif how == "mismatch":
        state = torch.load(path, weights_only=True)
        state["config"]["model"]["hidden"] = 48
        torch.save(state, path)
    elif how == "future":
        state = torch.load(path, weights_only=True)
        torch.save({**state, "version": 99}, path)


SETUP = {
    "a_file": lambda tmp, run: _write(tmp / "a_file", "x"),
    "preset_unknown_key": lambda tmp, run: _write(tmp / "p.yaml", "train:\n  nope: 1\n"),
    "preset_wrong_type": lambda tmp, run: _write(tmp / "p.yaml", "train:\n  epochs: many\n"),
    "preset_not_mapping": lambda tmp, run: _write(tmp / "p.yaml", "- 1\n- 2\n"),
    "preset_bad_yaml": lambda tmp, run: _write(tmp / "p.yaml", "train: [1, 2\n"),
    "preset_empty": lambda tmp, run: _write(tmp / "p.yaml", ""),
    "preset_python_tag": lambda tmp, run: _write(tmp / "p.yaml", "train: !!python/object/apply:os.system ['true']\n"),
    "preset_dir": lambda tmp, run: (tmp / "presetdir").mkdir(),
    "no_checkpoints": lambda tmp, run: (tmp / "empty_run").mkdir(),
    **{
        f"ckpt_{how}": functools.partial(lambda how, tmp, run: _corrupt_checkpoint(run, how), how)
        for how in ("garbage", "truncated", "foreign", "mismatch", "future")
    },
}

CASES = [
    # CLI arguments
    ("argv-unknown-command", None, ["frobnicate"], "invalid choice"),
    ("argv-unknown-flag", None, ["train", "--no-such-flag"], "unrecognized arguments"),
    ("argv-theory-int", None, ["theory", "--num-classes", "ten"], "invalid int value"),
    ("argv-theory-classes-count", None, ["theory", "--classes", "1"], "expected 3 arguments"),
    ("argv-reproduce-scale", None, ["reproduce", "fig1", "--scale", "huge"], "invalid choice"),
    ("argv-reproduce-datasets", None, ["reproduce", "fig1", "--datasets", "mnist"], "comma-separated list"),
    ("argv-reproduce-threads", None, ["reproduce", "fig1", "--scale", "tiny", "--threads", "0"], "--threads"),
    ("argv-reproduce-unknown", None, ["reproduce", "fig4", "--scale", "tiny"], "unknown experiment 'fig4'"),
    ("argv-reproduce-none", None, ["reproduce"], "name an experiment"),
    ("argv-sweep-no-preset", None, ["sweep", "--out", "{tmp}/s"], "required"),
    (
        "argv-sweep-gpus",
        None,
        ["sweep", "--preset", "digits", "--out", "{tmp}/s", "--gpus", "x,y", "--grid", "train.lr=[0.1]"],
        "gpus",
    ),
    (
        "argv-sweep-nproc",
        None,
        ["sweep", "--preset", "digits", "--out", "{tmp}/s", "--nproc-per-node", "0", "--grid", "train.lr=[0.1]"],
        "nproc",
    ),
    # config overrides
    ("override-no-equals", None, ["train", "--out", "{tmp}/r", "train.lr"], "train.lr"),
    ("override-unknown-section", None, ["train", "--out", "{tmp}/r", "nope.lr=1"], "nope"),
    ("override-unknown-key", None, ["train", "--out", "{tmp}/r", "train.nope=1"], "nope"),
    ("override-wrong-type", None, ["train", "--out", "{tmp}/r", "train.epochs=many"], "train.epochs"),
    ("override-float-for-int", None, ["train", "--out", "{tmp}/r", "train.epochs=1.5"], "train.epochs"),
    ("override-nan-lr", None, ["train", "--out", "{tmp}/r", "train.lr=.nan"], "train.lr"),
    ("override-inf-lr", None, ["train", "--out", "{tmp}/r", "train.lr=.inf"], "train.lr"),
    ("override-nan-alpha", None, ["train", "--out", "{tmp}/r", "mixing.alpha=.nan"], "mixing.alpha"),
    ("override-inf-alpha", None, ["train", "--out", "{tmp}/r", "mixing.alpha=.inf"], "mixing.alpha"),
    ("override-nan-wd", None, ["train", "--out", "{tmp}/r", "train.weight_decay=.nan"], "train.weight_decay"),
    ("override-negative-lr", None, ["train", "--out", "{tmp}/r", "train.lr=-0.1"], "train.lr=-0.1 must be > 0"),
    ("override-negative-alpha", None, ["train", "--out", "{tmp}/r", "mixing.alpha=-1"], "mixing.alpha=-1"),
    ("override-zero-epochs", None, ["train", "--out", "{tmp}/r", "train.epochs=0"], "train.epochs=0 must be >= 1"),
    ("override-dataset", None, ["train", "--out", "{tmp}/r", "data.name=imagenet"], "data.name='imagenet'"),
    ("override-model", None, ["train", "--out", "{tmp}/r", "model.name=resnet"], "model.name='resnet'"),
    ("override-loss", None, ["train", "--out", "{tmp}/r", "train.loss=hinge"], "train.loss='hinge'"),
    ("override-wrn-depth", None, ["train", "--out", "{tmp}/r", "model.name=wrn", "model.depth=11"], "6n + 4"),
    (
        "override-vit-heads",
        None,
        ["train", "--out", "{tmp}/r", "model.name=vit", "model.embed_dim=30", "model.num_heads=4"],
        "num_heads",
    ),
    ("override-classes-twice", None, ["train", "--out", "{tmp}/r", "data.classes=[1,1,2]"], "more than once"),
    ("override-classes-range", None, ["train", "--out", "{tmp}/r", "data.classes=[0,1,12]"], "out of range"),
    ("override-analysis-classes", None, ["train", "--out", "{tmp}/r", "analysis.classes=[0,1,10]"], "0..9"),
    ("override-analysis-two", None, ["train", "--out", "{tmp}/r", "analysis.classes=[0,1]"], "three distinct"),
    ("override-bn-mode", None, ["train", "--out", "{tmp}/r", "analysis.bn_mode=frozen"], "analysis.bn_mode"),
    ("override-device", None, ["train", "--out", "{tmp}/r", "train.device=tpu"], "train.device"),
    (
        "override-checkpoint-epochs",
        None,
        ["train", "--out", "{tmp}/r", "train.epochs=5", "train.checkpoint_epochs=[9]"],
        "checkpoint_epochs",
    ),
    ("override-demo", None, ["demo", "--out", "{tmp}/d", "train.lr=-1"], "train.lr"),
    ("override-analyze-train-key", "no_checkpoints", ["analyze", "{run}", "train.lr=0.5"], "train.lr"),
    # preset files
    ("preset-missing", None, ["train", "--preset", "nope", "--out", "{tmp}/r"], "no preset or YAML file 'nope'"),
    ("preset-unknown-key", "preset_unknown_key", ["train", "--preset", "{tmp}/p.yaml", "--out", "{tmp}/r"], "nope"),
    (
        "preset-wrong-type",
        "preset_wrong_type",
        ["train", "--preset", "{tmp}/p.yaml", "--out", "{tmp}/r"],
        "train.epochs",
    ),
    ("preset-not-mapping", "preset_not_mapping", ["train", "--preset", "{tmp}/p.yaml", "--out", "{tmp}/r"], "p.yaml"),
    ("preset-bad-yaml", "preset_bad_yaml", ["train", "--preset", "{tmp}/p.yaml", "--out", "{tmp}/r"], "p.yaml"),
    ("preset-empty", "preset_empty", ["train", "--preset", "{tmp}/p.yaml", "--out", "{tmp}/r"], "empty"),
    ("preset-python-tag", "preset_python_tag", ["train", "--preset", "{tmp}/p.yaml", "--out", "{tmp}/r"], "p.yaml"),
    ("preset-directory", "preset_dir", ["train", "--preset", "{tmp}/presetdir", "--out", "{tmp}/r"], "presetdir"),
    ("preset-sweep-missing", None, ["sweep", "--preset", "nope", "--out", "{tmp}/s"], "no preset or YAML file"),
    # run directories
    ("run-analyze-missing", None, ["analyze", "{tmp}/missing"], "missing"),
    ("run-analyze-file", "a_file", ["analyze", "{tmp}/a_file"], "a_file"),
    ("run-analyze-empty", "no_checkpoints", ["analyze", "{tmp}/empty_run"], "empty_run"),
    ("run-analyze-checkpoint-missing", None, ["analyze", "{run}", "--checkpoint", "{tmp}/none.pt"], "none.pt"),
    ("run-train-holds-run", None, ["train", "--out", "{run}", *TINY, *TINY_RUN_SETTINGS], "already holds a run"),
    (
        "run-resume-other-config",
        None,
        ["train", "--out", "{run}", "--resume", *TINY, *TINY_RUN_SETTINGS, "train.lr=0.5"],
        "cannot resume",
    ),
    (
        "run-analyze-not-a-checkpoint",
        "a_file",
        ["analyze", "{run}", "--checkpoint", "{tmp}/a_file"],
        "truncated or corrupt",
    ),
    ("run-report-missing", None, ["report", "{tmp}/none"], "report"),
    ("run-report-empty", "no_checkpoints", ["report", "{tmp}/empty_run"], "holds no reproduce results"),
    # checkpoints
    ("ckpt-garbage", "ckpt_garbage", ["analyze", "{run}"], "truncated or corrupt"),
    ("ckpt-truncated", "ckpt_truncated", ["analyze", "{run}"], "truncated or corrupt"),
    ("ckpt-foreign", "ckpt_foreign", ["analyze", "{run}"], "not a mixcollapse checkpoint"),
    ("ckpt-mismatch", "ckpt_mismatch", ["analyze", "{run}"], "do not fit"),
    ("ckpt-future", "ckpt_future", ["analyze", "{run}"], "format version 99"),
    (
        "ckpt-resume-garbage",
        "ckpt_garbage",
        ["train", "--out", "{run}", "--resume", *TINY, *TINY_RUN_SETTINGS],
        "truncated or corrupt",
    ),
    # theory parameters
    ("theory-classes-1", None, ["theory", "--num-classes", "1", "--no-joint", "--out", "{tmp}/t"], "num_classes"),
    ("theory-classes-2", None, ["theory", "--num-classes", "2", "--no-joint", "--out", "{tmp}/t"], "at least 3"),
    ("theory-dim", None, ["theory", "--dim", "2", "--no-joint", "--out", "{tmp}/t"], "dim"),
    ("theory-wd-h", None, ["theory", "--weight-decay-h", "0", "--no-joint", "--out", "{tmp}/t"], "lambda_H"),
    ("theory-wd-w", None, ["theory", "--weight-decay-w", "-1", "--no-joint", "--out", "{tmp}/t"], "lambda_W"),
    ("theory-alpha", None, ["theory", "--alpha", "0", "--no-joint", "--out", "{tmp}/t"], "alpha"),
    ("theory-alpha-nan", None, ["theory", "--alpha", "nan", "--no-joint", "--out", "{tmp}/t"], "alpha"),
    ("theory-multiplier", None, ["theory", "--multiplier", "0", "--no-joint", "--out", "{tmp}/t"], "multiplier"),
    ("theory-classes-range", None, ["theory", "--classes", "0", "1", "10", "--no-joint", "--out", "{tmp}/t"], "10"),
    (
        "theory-classes-repeat",
        None,
        ["theory", "--classes", "0", "0", "1", "--no-joint", "--out", "{tmp}/t"],
        "distinct",
    ),
    # sweep grids
    ("grid-no-equals", None, ["sweep", "--preset", "digits", "--out", "{tmp}/s", "--grid", "train.lr"], "train.lr"),
    (
        "grid-unknown-key",
        None,
        ["sweep", "--preset", "digits", "--out", "{tmp}/s", "--grid", "train.nope=[1,2]"],
        "nope",
    ),
    ("grid-empty", None, ["sweep", "--preset", "digits", "--out", "{tmp}/s", "--grid", "train.lr=[]"], "empty"),
    (
        "grid-logspace-args",
        None,
        ["sweep", "--preset", "digits", "--out", "{tmp}/s", "--grid", "train.lr=logspace(0.1,1)"],
        "logspace(start,stop,count)",
    ),
    (
        "grid-logspace-zero",
        None,
        ["sweep", "--preset", "digits", "--out", "{tmp}/s", "--grid", "train.lr=logspace(0,1,3)"],
        "positive",
    ),
    (
        "grid-count",
        None,
        ["sweep", "--preset", "digits", "--out", "{tmp}/s", "--grid", "train.lr=linspace(0.1,1,0)"],
        "count",
    ),
    (
        "grid-bad-value",
        None,
        ["sweep", "--preset", "digits", "--out", "{tmp}/s", "--grid", "train.lr=[a,b]"],
        "train.lr",
    ),
    ("grid-none", None, ["sweep", "--preset", "digits", "--out", "{tmp}/s"], "has no default grid"),
    # output paths
    ("out-under-file", "a_file", ["train", "--out", "{tmp}/a_file/run", *TINY], "a part of that path is a file"),
    ("out-is-file", "a_file", ["train", "--out", "{tmp}/a_file", *TINY], "is a file"),
    ("out-proc", None, ["train", "--out", "/proc/mixcollapse-run", *TINY], "/proc/mixcollapse-run"),
    ("out-theory-file", "a_file", ["theory", "--out", "{tmp}/a_file"], "is a file; give a folder"),  # before compute
    ("out-theory-under-file", "a_file", ["theory", "--out", "{tmp}/a_file/fig"], "lies under a file"),
    ("out-compare-file", "a_file", ["compare", "{run}", "--out", "{tmp}/a_file"], "is a file; give a folder"),
    (
        "out-report-foreign-file",
        "a_file",
        ["report", "{tmp}", "--out", "{tmp}/a_file"],
        "is not a report written by mixcollapse; pass --overwrite",
    ),
    ("out-report-folder", "preset_dir", ["report", "{tmp}", "--out", "{tmp}/presetdir"], "is a folder"),
    ("out-analyze-under-file", "a_file", ["analyze", "{run}", "--out", "{tmp}/a_file/x"], "a_file"),
    ("out-report-under-file", "a_file", ["report", "{tmp}/a_file"], "a_file"),
    ("out-demo-under-file", "a_file", ["demo", "--out", "{tmp}/a_file/demo", "train.epochs=1"], "a_file"),
    (
        "data-missing",
        None,
        ["train", "--out", "{tmp}/r", "--data-root", "{tmp}/nodata", "data.name=cifar10", "model.name=small", *TINY],
        "cifar-10-batches-py",
    ),
]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_the_table_is_large_and_its_names_unique():
    assert len(CASES) >= 60 and len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize("name, setup, argv, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_with_exit_2_and_nothing_written(
    name, setup, argv, fragment, tiny_run, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # default outputs (runs/, demo_out/) would land here and be seen
    if setup:
        SETUP[setup](tmp_path, tiny_run)
    argv = [a.format(tmp=tmp_path, run=tiny_run) for a in argv]
    before = _snapshot(tmp_path)
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and "error:" in lines[0]
    assert fragment in lines[0], lines[0]
    assert _snapshot(tmp_path) == before, "a file was written or changed"
