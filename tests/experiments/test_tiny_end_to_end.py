"""Every experiment end to end at tiny scale on CPU, as CI runs it; one shared output directory.

The runs that experiments share (e.g. WRN/CIFAR10 mixup in fig1, fig2, fig10, fig11 and both tables)
are trained once for the whole session. Real data is never present here, so every dataset comes
from synthetic files in its real on-disk format.
"""

from __future__ import annotations

import json
import logging
import time

import pytest

from mixcollapse.experiments.paper import EXPERIMENTS
from mixcollapse.experiments.reproduce import reproduce

pytestmark = pytest.mark.slow
TIMES: dict[str, float] = {}


@pytest.fixture(scope="session")
def tiny_out(tmp_path_factory):
    return tmp_path_factory.mktemp("reproduce_tiny")


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_experiment_runs_at_tiny_scale(name, tiny_out, caplog):
    caplog.set_level(logging.INFO, logger="mixcollapse")
    tic = time.perf_counter()
    (manifest,) = reproduce(name, scale="tiny", out=tiny_out, data_root=tiny_out / "no-real-data")
    TIMES[name] = time.perf_counter() - tic
    out = caplog.text
    assert "SYNTHETIC files in the real format" in out
    assert manifest["scale"] == "tiny" and manifest["synthetic"]
    saved = json.loads((tiny_out / "experiments" / f"{name}.json").read_text())
    assert saved["name"] == name
    exp = EXPERIMENTS[name]
    if exp.step == "table":
        (table,) = manifest["tables"]
        assert all(c["measured"] is not None and c["paper"] is not None for c in table["cells"])
        for suffix in ("csv", "json", "md"):
            assert (tiny_out / "tables" / f"{name}.{suffix}").is_file()
        assert table["caption"] in out  # printed
    else:
        assert (tiny_out / "figures" / f"{name}.png").stat().st_size > 1000
    if name == "fig10":  # the paper's WRN row, then the ViT row (below full scale), at the same fractions
        assert [(p["run"].split("-")[0], p["epoch"]) for p in manifest["panels"]] == [
            (arch, e) for arch in ("wrn", "vit") for e in (1, 2, 3)
        ]
    if name == "fig11":  # three subsets of each architecture
        assert len({tuple(p["classes"]) for p in manifest["panels"]}) == 3 and len(manifest["panels"]) == 6
    if name == "fig3":
        assert [t["projection"] for t in manifest["trajectories"]] == ["classifier", "probe"]
        assert all(t["readout"]["small_lambda"]["mixes"] == 64 for t in manifest["trajectories"])
    for run in manifest["runs"].values():
        assert run["epochs"] == 3


def test_rerun_trains_nothing_and_report(tiny_out, caplog):
    caplog.set_level(logging.INFO, logger="mixcollapse")
    tic = time.perf_counter()
    reproduce("table1", scale="tiny", out=tiny_out, data_root=tiny_out / "no-real-data")
    out = caplog.text
    assert "0 to run" in out and "[train]" not in out
    print(f"rerun of table1 with every run finished: {time.perf_counter() - tic:.1f}s")
    import re
    import shlex

    from mixcollapse.cli import main

    (hint,) = re.findall(r"`(mixcollapse report [^`]+)`", out)  # the command printed at the end, run as printed
    for _ in range(2):  # the second run replaces the report the first one wrote
        assert main(shlex.split(hint)[1:]) == 0
    text = (tiny_out / "report.html").read_text()
    assert text.count("data:image/png;base64,") >= 10
    assert "97.3" in text and "0.122" in text  # the paper's values beside ours
    print(
        "tiny-scale seconds per experiment:",
        {k: round(v, 1) for k, v in TIMES.items()},
        "total",
        round(sum(TIMES.values()), 1),
    )


def test_methods_are_drawn_side_by_side_with_their_measures(tiny_out):
    """The methods beyond the paper: one panel and one table row per method and architecture; CutMix's pairs
    carry their box's exact area as lambda, the other methods blended pairs."""
    import numpy as np

    from mixcollapse.analysis.extract import load_pair_features
    from mixcollapse.experiments.paper import METHOD_MEASURES, METHOD_VARIANTS

    (manifest,) = reproduce("methods", scale="tiny", archs=["wrn"], out=tiny_out, data_root=tiny_out / "no-real-data")
    (table,) = manifest["tables"]
    assert [row[0] for row in table["rows"]] == [f"wrn-cifar10-{v}" for v in METHOD_VARIANTS]
    assert table["header"][2:] == list(METHOD_MEASURES) and all(len(r) == len(table["header"]) for r in table["rows"])
    assert [p["run"] for p in manifest["panels"]] == [row[0] for row in table["rows"]]
    cutmix = np.asarray(load_pair_features(tiny_out / "analysis" / "wrn-cifar10-cutmix" / "last" / "features").lam)
    np.testing.assert_allclose(cutmix * 32 * 32, np.round(cutmix * 32 * 32), atol=1e-6)  # areas of 32x32 images
    mixup = np.asarray(load_pair_features(tiny_out / "analysis" / "wrn-cifar10-mixup" / "last" / "features").lam)
    assert not np.allclose(mixup * 32 * 32, np.round(mixup * 32 * 32))  # blends: any lambda
    assert "label smoothing ε=0.1" in table["rows"][3][1] and "manifold mixup α=2" in table["rows"][1][1]
