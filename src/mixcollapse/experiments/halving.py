"""Successive halving over a sweep's grid: which epochs are rungs, which points go on, and what it costs.

A deviation from Appendix B.1, chosen with ``--sweep halving`` (the default stays the paper's full sweep,
every point trained to the end). Every grid point trains to the first rung (``epochs / ETA**2``); the best
``1/ETA`` of them by test accuracy at that epoch go on to the next rung (``epochs / ETA``), the best ``1/ETA``
of those to the end, and the pick is, as in the paper, the highest test accuracy at the final epoch. A run
that stops at a rung is the first epochs of the full run (its learning rate follows the full schedule,
``train --until-epoch``), so a survivor continues it from its checkpoint with nothing trained twice.

The rule is written by hand rather than taken from Optuna's SuccessiveHalvingPruner or HyperbandPruner:
those are asynchronous (a trial is judged against the trials that happened to report before it), so the
pick depends on the order runs finish, and a trial must report to a shared study from inside training.
Here the decision at a rung waits for every point and reads only the runs' own metrics.jsonl, so it is
the same on every call: a killed sweep recomputes it and resumes, and any launcher (in-process,
subprocesses, Slurm) runs the rungs. This module holds the arithmetic; experiments.sweep runs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ETA = 3  # keep the best third at each rung (Hyperband's default reduction factor)

RUNGS = 3  # epochs / 9, epochs / 3, epochs: the last rung is the full run

HALVING_SELECTION = (
    f"successive halving (a deviation from Appendix B.1): every point to epochs/{ETA**2}, the best 1/{ETA} by test "
    f"accuracy there to epochs/{ETA}, the best 1/{ETA} of those to the end; the pick is the highest final-epoch "
    "test accuracy; ties: the first in grid order"
)


def halving_rungs(epochs: int, eval_every: int = 1, eta: int = ETA, rungs: int = RUNGS) -> list[int]:
    """The rung epochs of a run of ``epochs``: ``epochs / eta**k`` rounded to the nearest epoch that evaluates the
    test set (a multiple of ``eval_every``, at least one), ascending, without repeats; the last is ``epochs``."""
    out = []
    for k in range(rungs - 1, 0, -1):
        epoch = max(eval_every, eval_every * round(epochs / eta**k / eval_every))
        if epoch < epochs and (not out or epoch > out[-1]):
            out.append(epoch)
    return [*out, epochs]


def survivors(scores: Sequence[tuple[str, float | None]], eta: int = ETA) -> list[str]:
    """The points that go on from a rung: the best ``ceil(n / eta)`` of the ``n`` scored (name, test accuracy),
    in the order given (grid order); ties keep the earlier point; a point without a score (its run failed or
    diverged) never goes on."""
    keep = math.ceil(len(scores) / eta)
    ranked = sorted((i for i, (_, score) in enumerate(scores) if score is not None), key=lambda i: (-scores[i][1], i))
    return [scores[i][0] for i in sorted(ranked[:keep])]


def rung_sizes(points: int, stages: int, eta: int = ETA) -> list[int]:
    """How many points train to each of ``stages`` rungs when none fails: ``points``, then ``ceil(n / eta)`` of each."""
    sizes = [points]
    for _ in range(stages - 1):
        sizes.append(math.ceil(sizes[-1] / eta))
    return sizes


def trained_epochs(points: int, rungs: Sequence[int], eta: int = ETA) -> list[tuple[int, int]]:
    """(points, epoch reached) for each rung: the sweep trains ``points`` runs to the first rung, the survivors
    on to the next, and so on (none failing); the full sweep is ``[(points, epochs)]``."""
    return list(zip(rung_sizes(points, len(rungs), eta), rungs, strict=True))


def halving_fraction(points: int, epochs: int, eval_every: int = 1, eta: int = ETA) -> float:
    """Training epochs of a halving sweep over ``points`` points as a fraction of the full sweep's."""
    rungs = halving_rungs(epochs, eval_every, eta)
    total, previous = 0, 0
    for n, epoch in trained_epochs(points, rungs, eta):
        total += n * (epoch - previous)
        previous = epoch
    return total / (points * epochs)
