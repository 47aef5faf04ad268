"""The run directory: one training run's resolved config, metrics, checkpoints and figures.

Layout::

    RUN/
      config.yaml            the resolved ExperimentConfig (redoes the run: train --preset RUN/config.yaml)
      metrics.jsonl          one JSON object per epoch (see mixcollapse.training.loop for the keys)
      checkpoints/last.pt    the latest checkpoint (every train.checkpoint_every epochs, at kept epochs, at the
                             final epoch, and the last finished epoch when a stop signal arrives:
                             mixcollapse.training.interrupt); --resume continues from it
      checkpoints/epoch_0100.pt  kept checkpoints of train.checkpoint_epochs (Figure 10)
      figures/               figures drawn from this run

A new run refuses a directory that already holds one (config.yaml, metrics.jsonl or a checkpoint);
``resume=True`` continues it, and then the requested config must equal the saved one except for
:data:`RESUME_FREE_FIELDS`, which change where and how visibly a run happens, when it is checkpointed, or
what is analysed afterwards (``analysis.*``), never what is trained (:func:`resume_differences`).
``train.epochs`` may grow on resume only with ``train.schedule: constant``, whose learning rates do not
depend on the total, so that the extended run is exactly the longer run trained at once; the other
schedules place their milestones and their cosine period by the total epochs, so a longer run of theirs
is a different run (a new ``--out``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from mixcollapse.config import ConfigError, ExperimentConfig, config_from_dict, dump_yaml, to_dict
from mixcollapse.files import atomic_write_text, json_safe, remove_stale_temp_files

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"

# Fields that may differ between a run's saved config and a resume request: none changes what is
# trained (data, model, objective, schedule), though another device or worker count is not bitwise
# the same run (see mixcollapse.training.loop on exact resumption).
# A section name ("analysis") frees the whole section: analysis settings are read after training.
RESUME_FREE_FIELDS = (
    "train.progress",
    "train.device",
    "train.threads",
    "train.tensorboard",
    "train.checkpoint_every",
    "train.checkpoint_epochs",
    "data.num_workers",
    "data.root",
    "data.download",
    "analysis",
)


class RunDirError(ValueError):
    """A run directory cannot be used as asked; the one-line message says what to do."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def last_checkpoint_path(run_dir: str | Path) -> Path:
    return checkpoint_dir(run_dir) / LAST_CHECKPOINT


def epoch_checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """``checkpoints/epoch_{epoch:04d}.pt`` (epochs count from 1)."""
    return checkpoint_dir(run_dir) / f"epoch_{epoch:04d}.pt"


def holds_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run: a checkpoint, something to resume from.

    A start that failed before its first checkpoint (missing data, a late config error, a
    divergence, Ctrl-C) leaves config.yaml and perhaps some metrics rows, but nothing a resume
    could use; its plain rerun takes the directory over instead of being refused.
    """
    ckpts = checkpoint_dir(run_dir)
    return ckpts.is_dir() and any(ckpts.glob("*.pt"))


def read_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config saved in ``run_dir/config.yaml``."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        values = yaml.safe_load(path.read_text())
        return config_from_dict(values or {})
    except FileNotFoundError:
        raise RunDirError(f"{path} not found: {run_dir} is not a run directory") from None
    except (yaml.YAMLError, ConfigError) as err:
        raise RunDirError(f"{path} is not a valid config ({' '.join(str(err).split())})") from None


def config_differences(saved: ExperimentConfig, requested: ExperimentConfig, ignore=RESUME_FREE_FIELDS) -> list[str]:
    """``key: saved -> requested`` for every dotted key whose values differ, except ``ignore``."""

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            out.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
        return out

    def free(key: str) -> bool:
        return any(key == f or key.startswith(f + ".") for f in ignore)

    a, b = flat(to_dict(saved)), flat(to_dict(requested))
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if not free(k) and a.get(k) != b.get(k)
    ]


def resume_differences(saved: ExperimentConfig, requested: ExperimentConfig) -> list[str]:
    """What keeps ``requested`` from continuing a run trained with ``saved`` (``key: saved -> requested``).

    RESUME_FREE_FIELDS may differ; so may ``train.epochs`` when it grows under a constant schedule.
    """
    diffs = config_differences(saved, requested)
    if saved.train.schedule == requested.train.schedule == "constant" and requested.train.epochs >= saved.train.epochs:
        diffs = [d for d in diffs if not d.startswith("train.epochs:")]
    return diffs


def check_run_dir(run_dir: str | Path, cfg: ExperimentConfig, resume: bool = False) -> Path:
    """Raise RunDirError unless ``cfg`` may start (or, with ``resume``, continue) in ``run_dir``; writes nothing.

    New run: refuses a directory that already holds a run (a checkpoint; see :func:`holds_run`). Resume: the
    saved config must equal ``cfg`` except for RESUME_FREE_FIELDS; a directory without a run starts one (so
    ``--resume`` is safe to pass always, e.g. in a job script that may be re-queued).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} is a file; choose another --out (run_dir)")
    existing = holds_run(run_dir)
    if existing and not resume:
        raise RunDirError(
            f"run directory {run_dir} already holds a run; pass --resume (resume=True) to continue it or choose "
            "another --out (run_dir)"
        )
    if existing and (run_dir / CONFIG_FILE).exists():
        diffs = resume_differences(read_config(run_dir), cfg)
        if diffs:
            why = (
                "; a longer run with this schedule is a new run: choose another --out"
                if any(d.startswith("train.epochs:") for d in diffs)
                else ""
            )
            raise RunDirError(
                f"cannot resume {run_dir}: its config differs from the requested one ({'; '.join(diffs)}); "
                f"only {', '.join(f if '.' in f else f + '.*' for f in RESUME_FREE_FIELDS)} may change on resume "
                f"(and train.epochs grow with train.schedule=constant){why}"
            )
    return run_dir


def prepare_run_dir(run_dir: str | Path, cfg: ExperimentConfig, resume: bool = False) -> Path:
    """Check the run directory (:func:`check_run_dir`), then create it and write config.yaml; return its path.

    config.yaml is (re)written with ``cfg``, so on resume it holds the config the run continues with, as
    its next checkpoint does. Call on one process only (rank 0).
    """
    run_dir = check_run_dir(run_dir, cfg, resume)
    checkpoint_dir(run_dir).mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(checkpoint_dir(run_dir))
    atomic_write_text(run_dir / CONFIG_FILE, dump_yaml(cfg))  # on resume: the free fields' new values
    return run_dir


def append_metrics(run_dir: str | Path, row: dict) -> None:
    """Append one epoch's metrics as a JSON line to ``run_dir/metrics.jsonl`` (one write, flushed)."""
    line = json.dumps({k: json_safe(v) for k, v in row.items()}) + "\n"
    with open(Path(run_dir) / METRICS_FILE, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch metrics of a run, in order ([] before the first epoch ends).

    A last line cut off by a kill (no newline, not valid JSON) is skipped; any other bad line is
    an error.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        if not Path(run_dir).is_dir():
            raise RunDirError(f"run directory {run_dir} does not exist")
        return []
    text = path.read_text()
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # partial last line, written when the run was killed
                break
            raise RunDirError(f"{path}: line {i + 1} is not valid JSON") from None
    return rows


def truncate_metrics(run_dir: str | Path, last_epoch: int) -> None:
    """Keep only the metrics of epochs <= ``last_epoch`` (atomically): a resumed run rewrites the rest."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return
    keep = [row for row in read_metrics(run_dir) if int(row.get("epoch", 0)) <= last_epoch]
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in keep))
