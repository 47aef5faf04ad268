"""What never losing work costs: the checkpoint's share of training time, per recipe.

    python bench/bench_checkpoint.py [--epochs N] [--json FILE] [--presets digits wrn-fashionmnist-cpu ...]

Every epoch, training keeps a copy of its state on the CPU (what a Ctrl-C or SIGTERM writes,
mixcollapse.training.interrupt), and every ``train.checkpoint_every`` epochs it writes checkpoints/last.pt.
This trains each preset for a few epochs with its own settings, times both with wrappers around the loop's
``_state`` (the copy) and ``_write`` (the file, fsynced), and reports

    share = copy / epoch + write / (checkpoint_every * epoch)

the steady-state fraction of training time spent on checkpoints (target <= 2%), beside what a ``kill -9``
can lose: checkpoint_every epochs, in seconds. The FashionMNIST recipes need Debian's dataset-fashion-mnist
(skipped, saying so, without it). A benchmark, not a test: it reports what it measures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from mixcollapse.config import load_config
from mixcollapse.machine import available_cores, cpu_model
from mixcollapse.training import loop
from mixcollapse.training.rundir import atomic_write_text, read_metrics

PRESETS = ("digits", "wrn-fashionmnist-cpu", "vit-fashionmnist-cpu")
TARGET = 0.02


def _timed(name: str, times: list[float]):
    real = getattr(loop, name)

    def wrapper(*args, **kwargs):
        tic = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - tic)

    setattr(loop, name, wrapper)
    return real


def measure(preset: str, epochs: int, threads: int) -> dict:
    cfg = load_config(
        preset,
        [
            f"train.epochs={epochs}",
            "train.progress=false",
            "train.tensorboard=false",
            f"train.threads={threads}",
            "train.eval_every=1000",
            "train.checkpoint_epochs=[]",
            "train.warmup_epochs=0",
        ],
    )
    every = load_config(preset).train.checkpoint_every
    copies: list[float] = []
    writes: list[float] = []
    real_state, real_write = _timed("_state", copies), _timed("_write", writes)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tic = time.perf_counter()
            loop.train(cfg, Path(tmp) / "run")
            wall = time.perf_counter() - tic
            rows = read_metrics(Path(tmp) / "run")
            size = (Path(tmp) / "run" / "checkpoints" / "last.pt").stat().st_size
    finally:
        loop._state, loop._write = real_state, real_write
    epoch = statistics.median_high(r["epoch_seconds"] for r in rows[1:])  # the first epoch warms up
    copy = statistics.median_high(copies[1:])
    write = max(writes)
    share = copy / epoch + write / (every * epoch)
    return {
        "preset": preset,
        "epochs_trained": epochs,
        "threads": threads,
        "checkpoint_every": every,
        "epoch_seconds_median": round(epoch, 4),
        "copy_seconds_median": round(copy, 5),
        "write_seconds": round(write, 4),
        "checkpoint_mib": round(size / 2**20, 2),
        "share_of_training": round(share, 5),
        "target": f"<= {TARGET}",
        "met": share <= TARGET,
        "kill_9_loses_at_most_seconds": round(every * epoch, 1),
        "wall_seconds": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs per preset (default 6)")
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--json", default="docs/results/bench_checkpoint.json")
    args = parser.parse_args(argv)
    results = []
    for preset in args.presets:
        try:
            r = measure(preset, args.epochs, args.threads)
        except ValueError as err:  # a dataset that is not on this machine
            print(f"{preset}: skipped ({err})")
            continue
        results.append(r)
        print(
            f"{preset}: epoch {r['epoch_seconds_median']:.3f} s, copy {1000 * r['copy_seconds_median']:.2f} ms, "
            f"write {1000 * r['write_seconds']:.1f} ms ({r['checkpoint_mib']} MiB) every {r['checkpoint_every']} "
            f"epochs: {100 * r['share_of_training']:.2f}% of training (target <= {100 * TARGET:g}%); kill -9 loses "
            f"at most {r['kill_9_loses_at_most_seconds']} s"
        )
    out = {"cpu_model": cpu_model(), "cores": available_cores(), "results": results}
    atomic_write_text(Path(args.json), json.dumps(out, indent=2))
    print(f"numbers: {args.json}")
    return out


if __name__ == "__main__":
    main()
