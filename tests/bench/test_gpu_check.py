"""bench/gpu_check.py at its tiny size on a CPU, as CI runs it: every section measured, every key written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Run as documented (PYTHONPATH=src python bench/gpu_check.py), with plotly made unimportable: a GPU machine
# without internet has torch, torchvision, timm, scipy, scikit-learn and PyYAML, but no plotly.
WITHOUT_PLOTLY = (
    "import runpy, sys; sys.modules['plotly'] = None; sys.argv = ['bench/gpu_check.py', *sys.argv[1:]]; "
    "runpy.run_path('bench/gpu_check.py', run_name='__main__')"
)


@pytest.mark.slow  # five sections, each a few steps: about 10 s
def test_the_gpu_check_runs_tiny_on_a_cpu_and_writes_every_key(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_PLOTLY, "--tiny", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["tiny"] and not [k for k, v in report.items() if isinstance(v, dict) and "error" in v]
    for arch in ("wrn", "vit"):
        entry = report["training"][arch]
        assert entry["train_flops_per_image"] > 0 and entry["seconds_per_cifar10_epoch"] > 0
        for pipeline in ("tensor", "loader"):
            row = entry[pipeline]
            assert row["images_per_s"] > 0 and row["train_tflops"] > 0 and "fraction_of_bf16_peak" in row
        assert entry["tensor"]["amp"] == "bf16" and entry["loader"]["workers"] > 0
        assert entry["compiled"]["images_per_s"] > 0 and entry["compiled"]["compile_seconds"] > 0
    assert report["training"]["wrn"]["tensor"]["channels_last"]
    assert report["ddp"]["world_size"] == 1 and report["ddp"]["backend"] == "gloo" and report["ddp"]["images_per_s"] > 0
    assert report["analysis"]["pairs"] == 6 * 20 and report["analysis"]["pairs_per_s"] > 0
    ufm = report["ufm"]
    assert ufm["problems"] == 1000 and ufm["problems_per_s"] > 0 and ufm["max_relative_gradient"] < 1e-8
    hours = report["gpu_hours"]["experiments"]
    assert set(hours) >= {"fig1", "table2", "all"}
    assert all(h["measured_gpu_hours"] > 0 and h["estimated_h100_hours"] > 0 for h in hours.values())
    assert "[gpu-check] done" in proc.stdout
