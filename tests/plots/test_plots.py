"""Every figure draws saved numbers (the JSON sections as written, None for NaN) into PNG and PDF files."""

import json

import numpy as np
import pytest

from mixcollapse.plots import figures as plots

pytestmark = pytest.mark.usefixtures("single_thread")


def _saved(obj):
    """Round-trip through JSON as analysis.json does: NaN -> None."""
    return json.loads(json.dumps(obj).replace("NaN", "null"))


def configuration_section(slope=1.0):
    centers = (np.arange(20) + 0.5) / 20
    p_a = np.clip(0.5 + slope * (centers - 0.5), 0, 1)
    p_a[3] = np.nan  # an empty bin
    edges = np.linspace(-0.5, 1.5, 41)
    return _saved(
        {
            "lambda_bin_centers": centers.tolist(),
            "pair_prob_by_lambda": p_a.tolist(),
            "pair_prob_std_by_lambda": np.full(20, 0.05).tolist(),
            "pair_prob_mae": 0.04,
            "same_cos_by_lambda": np.full(20, 0.97).tolist(),
            "same_cos_lambda_spread": 0.01,
            "channel_position_by_lambda": centers.tolist(),
            "channel_position_std_by_lambda": np.full(20, 0.1).tolist(),
            "position_hist_edges": edges.tolist(),
            "position_hist_density": np.exp(-((edges[:-1] - 0.5) ** 2) * 8).tolist(),
        }
    )


def calibration_section():
    edges = np.linspace(0, 1, 16)
    acc = np.linspace(0.1, 1.0, 15)
    acc[:5] = np.nan
    counts = np.where(np.isnan(acc), 0, 10)
    return _saved(
        {
            "bin_edges": edges.tolist(),
            "accuracy_by_bin": acc.tolist(),
            "confidence_by_bin": (acc - 0.03).tolist(),
            "counts": counts.tolist(),
            "ece": 0.03,
            "mce": 0.05,
            "accuracy": 0.97,
        }
    )


def mixed_pairs_section():
    centers = (np.arange(10) + 0.5) / 10
    return _saved(
        {
            "different_class": {
                "bin_centers": centers.tolist(),
                "confidence": np.maximum(centers, 1 - centers).tolist(),
                "error_rate": (0.5 - np.abs(centers - 0.5)).tolist(),
                "error_rate_overall": 0.2,
                "mean_confidence": 0.75,
            },
            "same_class": None,
        }
    )


def metrics_rows(n=5):
    return [
        {
            "epoch": e,
            "classifier_norm_cv": 0.3 / e,
            "classifier_cos_std": 0.2 / e,
            "classifier_cos_mean": -0.1 - 0.01 * e,
            "classifier_etf_cos": -1 / 9,
            "classifier_etf_distance": 0.5 / e if e != 3 else None,
        }
        for e in range(1, n + 1)
    ]


def assert_written(paths, stem):
    assert [p.name for p in paths] == [f"{stem.name}.png"]  # PNG unless PDF is asked for
    for p in paths:
        assert p.stat().st_size > 1000
    assert not list(stem.parent.glob(".*tmp"))  # nothing half-written left behind


def test_configuration_measures_overlay_two_runs(tmp_path):
    stem = tmp_path / "figs" / "measures"
    paths = plots.configuration_measures_figure(
        [("mixup", configuration_section(1.0)), ("baseline", configuration_section(3.0))], stem, suptitle="x"
    )
    assert_written(paths, stem)


def test_pdf_and_svg_when_asked_and_one_line_for_an_unknown_format(tmp_path):
    from mixcollapse.plots.formats import current_formats, figure_formats

    stem = tmp_path / "figs" / "asked"
    with figure_formats("png", "PDF", ".svg"):
        paths = plots.classifier_geometry_figure([("run", metrics_rows())], stem)
    assert [p.name for p in paths] == ["asked.png", "asked.pdf", "asked.svg"] and current_formats() == ("png",)
    assert paths[1].read_bytes().startswith(b"%PDF") and b"<svg" in paths[2].read_bytes()[:1000]
    with pytest.raises(ValueError, match="unknown figure format 'eps'; choose from png, pdf, svg"):
        with figure_formats("png", "eps"):
            pass


def test_configuration_measures_without_channel_numbers(tmp_path):
    section = configuration_section()
    for key in ("channel_position_by_lambda", "position_hist_density"):
        section.pop(key)
    assert_written(plots.configuration_measures_figure([("run", section)], tmp_path / "m"), tmp_path / "m")


def test_the_reliability_legend_covers_no_bar(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, stem: figures.append(fig) or [])
    section = calibration_section()  # a tall bar in a low-confidence bin, where a corner legend would sit
    section["accuracy_by_bin"][5], section["counts"][5] = 0.98, 10
    plots.reliability_figure([("a", section), ("b", section)], tmp_path / "rel")
    fig = figures[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(a.get_legend() for a in fig.axes if a.get_legend() is not None)]
    from matplotlib.transforms import Bbox

    visible = (Bbox.intersection(p.get_window_extent(renderer), a.bbox) for a in fig.axes for p in a.patches)
    bars = [b for b in visible if b is not None]  # the part of each bar inside its axes (log scales clip)
    assert legends and bars
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(bar) for bar in bars)


def test_reliability_confidence_and_classifier_figures(tmp_path):
    assert_written(
        plots.reliability_figure([("a", calibration_section()), ("b", calibration_section())], tmp_path / "rel"),
        tmp_path / "rel",
    )
    assert_written(
        plots.confidence_by_lambda_figure([("a", mixed_pairs_section())], tmp_path / "conf"), tmp_path / "conf"
    )
    assert_written(
        plots.classifier_geometry_figure(
            [("mixup", metrics_rows()), ("baseline", metrics_rows(3))], tmp_path / "w", mark_epoch=4
        ),
        tmp_path / "w",
    )


def test_configuration_scatter_still_draws(tmp_path):
    rng = np.random.default_rng(0)
    panel = dict(
        xy=rng.normal(size=(50, 2)),
        lam=rng.uniform(size=50),
        same=rng.uniform(size=50) < 0.3,
        classifier_xy=np.array([[0, 1], [-0.87, -0.5], [0.87, -0.5]]),
        title="t",
        class_names=["a", "b", "c"],
    )
    assert_written(plots.configuration_figure([panel, panel], tmp_path / "cfg"), tmp_path / "cfg")


def _kept_figure(monkeypatch, module):
    """Make ``module.save_figure`` keep the figure instead of writing it; returns the list it lands in."""
    kept = []
    monkeypatch.setattr(module, "save_figure", lambda fig, stem, *args, **kwargs: kept.append(fig) or [])
    return kept


def _panel(seed, n=300):
    rng = np.random.default_rng(seed)
    xy = rng.normal(size=(n, 2)) * (1 + seed)  # panels with different data ranges
    A = np.array([[0.0, 1.0], [-0.87, -0.5], [0.87, -0.5]])
    return dict(
        xy=xy,
        lam=rng.uniform(size=n),
        same=rng.uniform(size=n) < 0.3,
        classifier_xy=A,
        title=f"panel {seed}",
        class_names=["a", "b", "c"],
    )


def test_a_row_of_panels_has_equal_panels_and_one_pair_of_colour_bars(tmp_path, monkeypatch):
    from mixcollapse.plots import paper

    row, grid = _kept_figure(monkeypatch, plots), _kept_figure(monkeypatch, paper)
    plots.configuration_figure([_panel(0), _panel(2)], tmp_path / "row")
    paper.draw_configuration_grid([[_panel(0), _panel(1), _panel(2)], [_panel(3)]], tmp_path / "grid", "title")
    for fig, n_panels in zip(row + grid, (2, 4), strict=True):
        bars = [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
        panels = [ax for ax in fig.axes if ax.axison and ax not in bars]
        assert len(bars) == 2 and len(panels) == n_panels
        fig.canvas.draw()
        sizes = {(round(ax.get_position().width, 4), round(ax.get_position().height, 4)) for ax in panels}
        assert len(sizes) == 1, sizes  # every panel the same size, whatever its data


def test_epoch_axes_show_whole_epochs(tmp_path, monkeypatch):
    """Figure 5's curves over a 3-epoch run: ticks at epochs 1, 2, 3, never 1.25 or 2.5."""
    from mixcollapse.plots import paper

    kept = _kept_figure(monkeypatch, paper)
    curves = {
        "r": {
            "arch": "wrn",
            "dataset": "fashionmnist",
            "epoch": [1, 2, 3],
            "norm_cv": [0.3, 0.2, 0.1],
            "cos_std": [0.2, 0.15, 0.1],
        }
    }
    paper.draw_classifier_curves(
        curves, tmp_path / "fig5", "Figure 5", {"fashionmnist": "FashionMNIST"}, {"wrn": "WRN"}
    )
    (fig,) = kept
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
