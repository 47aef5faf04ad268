"""The HTML report: self-contained (figures embedded), tables with the paper's values side by side."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from mixcollapse.experiments.report import build_report
from mixcollapse.plots.figures import save_figure


def write_manifest(out, name="table2", **extra):
    (out / "experiments").mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": name,
        "title": "CIFAR10 expected calibration error",
        "expected": "ECE falls with mixup",
        "step": "table",
        "scale": "tiny",
        "synthetic": True,
        "data": {"cifar10": "cifar10: SYNTHETIC files in the real format in x, not the real dataset"},
        "runs": {},
        **extra,
    }
    (out / "experiments" / f"{name}.json").write_text(json.dumps(manifest))


def test_report_embeds_figures_and_shows_paper_values(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    save_figure(fig, tmp_path / "figures" / "fig9")
    write_manifest(tmp_path, "fig9", figures=["figures/fig9.png", "figures/fig9.pdf"])
    table = {
        "caption": "Table 2",
        "header": ["Network", "Dataset", "Baseline (measured)", "Baseline (paper)"],
        "rows": [["ViT-B/4", "CIFAR10", 0.3, 0.122]],
    }
    write_manifest(tmp_path, "table2", tables=[table])
    path = build_report(tmp_path)
    text = path.read_text()
    assert path == tmp_path / "report.html"
    assert text.count("data:image/png;base64,") == 1 and "src='figures/" not in text
    assert "0.122" in text and "Baseline (paper)" in text and "class='paper" in text
    assert "Synthetic data" in text
    assert text.index("id='fig9'") < text.index("id='table2'")  # the paper's order
    # 100vw counts the vertical scrollbar, so a box that wide adds a horizontal one; a figure is as wide as the body.
    assert "100vw" not in text and ".fig img { max-width: 100%" in text
    # The report replaces the report it wrote; any other file only with overwrite (the CLI's --overwrite).
    assert build_report(tmp_path) == path
    (tmp_path / "notes.html").write_text("<p>mine</p>")
    with pytest.raises(FileExistsError, match="not a report written by mixcollapse"):
        build_report(tmp_path, tmp_path / "notes.html")
    assert (tmp_path / "notes.html").read_text() == "<p>mine</p>"
    assert "Table 2" in build_report(tmp_path, tmp_path / "notes.html", overwrite=True).read_text()


def test_a_report_says_which_experiments_chose_their_learning_rates_by_successive_halving(tmp_path):
    write_manifest(tmp_path, "fig1", sweep="halving")
    write_manifest(tmp_path, "table2", sweep="full")
    text = build_report(tmp_path).read_text()
    assert "Learning rates of fig1 chosen by successive halving" in text and "table2 chosen" not in text
    write_manifest(tmp_path, "fig1", sweep="full")
    assert "successive halving" not in build_report(tmp_path).read_text()


def test_report_of_a_directory_without_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no reproduce results"):
        build_report(tmp_path)
