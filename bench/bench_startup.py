"""Start-up: how long the toolkit takes to import and to refuse a bad config, each in a fresh process.

Reports medians of ``--repeat`` runs: ``import torch`` alone (the floor every command that trains pays),
``import mixcollapse.experiments.demo`` (the demo's modules: torch, matplotlib and the analysis; torchvision,
timm, plotly and scipy are imported only when a dataset with files, a ViT, an HTML figure or a UFM solve
needs them), and ``mixcollapse train`` with a config error (validated before torch is imported).
Ratios within one run; absolute times drift with the machine's load.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def _seconds(args: list[str]) -> float:
    tic = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, check=False)
    return time.perf_counter() - tic


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    cases = {
        "python alone": ["-c", "pass"],
        "import torch": ["-c", "import torch"],
        "import mixcollapse.experiments.demo": ["-c", "import mixcollapse.experiments.demo"],
        "mixcollapse train, config error": ["-m", "mixcollapse", "train", "--out", "/nonexistent/x", "mixing.alpha=-1"],
    }
    result = {name: statistics.median(_seconds(cmd) for _ in range(args.repeat)) for name, cmd in cases.items()}
    for name, seconds in result.items():
        print(f"{name:<40} {seconds:6.2f} s")
    print(f"demo modules / torch alone: {result['import mixcollapse.experiments.demo'] / result['import torch']:.2f}")
    return result


if __name__ == "__main__":
    main()
