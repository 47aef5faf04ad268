"""The hyper-parameter sweep of one preset (Appendix B.1): its grid, its data, its runs, the best by test accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mixcollapse.experiments.grid import parse_grid
from mixcollapse.experiments.launch import Launch
from mixcollapse.experiments.paper import GRIDS
from mixcollapse.experiments.runs import data_overrides, resolve_data
from mixcollapse.experiments.scales import scale_threads, scaled_config, sweep_grid
from mixcollapse.experiments.sweep import launch_slots, run_sweep


def sweep_preset(
    preset: str,
    out: str | Path,
    grid: Sequence[str] = (),
    *,
    scale: str = "full",
    data_root: str | None = None,
    overrides: Sequence[str] = (),
    prune: bool = False,
    seeds: Sequence[int] | None = None,
    method: str = "full",
    launch: Launch = Launch(),
) -> dict:
    """Train every point of ``grid`` (``KEY=VALUES`` strings; default: the preset's Appendix B.1 grid) into ``out``.

    Resumable: finished runs are never redone. Returns ``run_sweep``'s result (runs, best, complete). ``seeds``:
    each point trained with each seed; the best point is the one with the highest mean test accuracy. ``launch``:
    where the runs train (this machine's GPUs or CPU, or Slurm jobs). ``method``: ``full`` (every point to the
    end, Appendix B.1) or ``halving`` (successive halving, experiments.halving).
    """
    overrides = [*overrides, *launch.overrides()]
    base = scaled_config(preset, list(overrides), scale)
    if grid:
        points = parse_grid(list(grid))
    elif scale == "cpu":
        raise ValueError(
            "--scale cpu has no default grid (the CPU recipes train once with their own settings); pass --grid, "
            "e.g. --grid 'train.lr=logspace(0.01,0.25,5)'"
        )
    elif base.model.name in GRIDS:
        points = sweep_grid(base.model.name, scale)
    else:
        raise ValueError(
            f"preset '{preset}' ({base.model.name}) has no default grid; pass --grid, e.g. "
            "--grid train.lr=logspace(0.01,0.25,10)"
        )
    late: list[str] = []
    if base.data.name != "digits":
        root = data_root or base.data.root
        late = data_overrides(resolve_data(base.data.name, scale, root, out, base.data.download))
    elif data_root:
        late = [f"data.root={data_root}"]
    slots, runner = launch_slots(launch)
    with scale_threads(scale):
        return run_sweep(
            out,
            points,
            lambda hyper: scaled_config(preset, [*overrides, *hyper], scale, late),
            slots=slots,
            runner=runner,
            prune=prune,
            seeds=seeds,
            method=method,
        )
