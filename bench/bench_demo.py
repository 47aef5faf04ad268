"""Time the whole demo (two trainings, two extractions, figures) against its 5-minute budget.

    python bench/bench_demo.py [--repeat N]

Prints each phase's share and the ratio of the measured wall time to the budget (must be < 1).
The machine may be shared: run it on a quiet machine, and compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from mixcollapse.experiments.demo import run_demo

BUDGET_SECONDS = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    times = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as out:
            tic = time.perf_counter()
            summary = run_demo(out, progress=False)
            times.append(time.perf_counter() - tic)
        runs = summary["runs"]
        print(f"run {i + 1}: {times[-1]:.1f} s; pair_prob_mae mixup {runs['mixup']['pair_prob_mae']:.3f} "
              f"vs baseline {runs['baseline']['pair_prob_mae']:.3f}")
    best = min(times)
    print(f"demo wall time (best of {len(times)}): {best:.1f} s = {best / BUDGET_SECONDS:.2f} x the "
          f"{BUDGET_SECONDS:.0f} s budget ({'within' if best < BUDGET_SECONDS else 'OVER'} budget)")


if __name__ == "__main__":
    main()
