"""Figures: every plot draws saved numbers and computes nothing.

Figure-1-style configuration scatters use two separate sequential colour maps with their own
colour bars, one for same-class and one for different-class mixup points, and two marker
shapes. Neither map is black (or near-white) anywhere, so lambda = 0.5 is never ambiguous
between the two kinds of points, which the paper's figures were criticised for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from mpl_toolkits.axes_grid1 import make_axes_locatable  # noqa: E402

from mixcollapse.files import atomic_write  # noqa: E402
from mixcollapse.plots.formats import check_formats, current_formats  # noqa: E402


def _truncated(name: str, lo: float, hi: float) -> LinearSegmentedColormap:
    base = plt.get_cmap(name)
    return LinearSegmentedColormap.from_list(f"{name}_{lo}_{hi}", base(np.linspace(lo, hi, 256)))


SAME_CMAP = _truncated("Greens", 0.3, 0.95)  # light -> dark green: no hue shared with DIFF_CMAP
DIFF_CMAP = _truncated("plasma", 0.12, 0.92)  # purple -> orange -> yellow, no black, no white


def draw_classifier_rows(
    ax: plt.Axes,
    classifier_xy: np.ndarray,
    radius: float,
    class_names: Sequence[str] | None = None,
    linewidth: float = 1.2,
    markersize: float = 5,
) -> None:
    """Projected classifier rows in black, from the origin to just beyond the data's radius."""
    vertices = np.asarray(classifier_xy, dtype=float)
    vertices = vertices / np.linalg.norm(vertices, axis=1, keepdims=True) * radius * 1.08
    for k, (vx, vy) in enumerate(vertices):
        ax.plot([0, vx], [0, vy], color="black", linewidth=linewidth)
        ax.plot(vx, vy, "o", color="black", markersize=markersize)
        if class_names is not None:
            # Written towards the inside of the panel (right-hand vertices get right-aligned labels), so
            # no label runs past the axes into a colour bar or the next panel.
            side = vx / radius
            ha = "right" if side > 0.3 else "left" if side < -0.3 else "center"
            up = vy >= 0
            ax.annotate(
                str(class_names[k]),
                (vx, vy),
                textcoords="offset points",
                xytext=(0, 6 if up else -6),
                ha=ha,
                va="bottom" if up else "top",
                fontsize=8,
            )
    # Square limits about the origin: the points (within ``radius`` of it in each coordinate), the vertices
    # (at 1.08 radius) and room for their labels; every panel of a grid then has the same size.
    limit = 1.3 * radius
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)


def scatter_configuration(
    ax: plt.Axes,
    xy: np.ndarray,
    lam: np.ndarray,
    same: np.ndarray,
    classifier_xy: np.ndarray,
    title: str = "",
    class_names: Sequence[str] | None = None,
    colorbars: bool = True,
    point_size: float = 4.0,
    same_size: float | None = None,
    radius: float | None = None,
) -> None:
    """Draw one configuration panel: projected features coloured by lambda, classifiers in black.

    ``colorbars=False`` leaves the colour bars to the figure (:func:`add_lambda_colorbars`, one pair for
    all panels); ``same_size``: marker area of same-class points (default 1.5 ``point_size``), larger and
    outlined where they collapse onto a few spots (the UFM optimum of Figure 6); ``radius``: the half-width
    of the data the axes show (default: this panel's own), one value for panels on shared axes.
    """
    xy, lam, same = np.asarray(xy), np.asarray(lam), np.asarray(same, dtype=bool)
    order = np.argsort(np.abs(lam - 0.5))[::-1]  # lambda near 0.5 drawn last, on top
    xy, lam, same = xy[order], lam[order], same[order]
    diff = ax.scatter(
        *xy[~same].T, c=lam[~same], cmap=DIFF_CMAP, vmin=0, vmax=1, s=point_size, marker="o", linewidths=0, alpha=0.8
    )
    outlined = dict(edgecolors="black", linewidths=0.6) if same_size else dict(linewidths=0)
    same_pts = ax.scatter(
        *xy[same].T,
        c=lam[same],
        cmap=SAME_CMAP,
        vmin=0,
        vmax=1,
        s=same_size or point_size * 1.5,
        marker="s",
        alpha=0.8,
        zorder=3 if same_size else None,
        **outlined,
    )
    if radius is None:
        radius = float(np.abs(xy).max()) if len(xy) else 1.0
    draw_classifier_rows(ax, classifier_xy, radius, class_names)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if colorbars:
        divider = make_axes_locatable(ax)
        for mappable, label, pad in ((diff, "λ, different class", 0.05), (same_pts, "λ, same class", 0.6)):
            cax = divider.append_axes("right", size="4%", pad=pad)
            bar = ax.figure.colorbar(mappable, cax=cax)
            bar.set_label(label, fontsize=7)
            bar.ax.tick_params(labelsize=6)
            bar.solids.set_alpha(1.0)


def save_figure(
    fig: plt.Figure, stem: str | Path, formats: Sequence[str] | None = None, *, crop: bool = True
) -> list[Path]:
    """Save ``fig`` as stem.png (and stem.pdf when asked: ``plots.formats``), each through a temporary file, renamed.

    ``formats`` None: the current ones (``plots.formats.current_formats``: PNG unless ``--pdf``). ``crop``:
    cut the figure to its drawn content (matplotlib's tight bounding box, one more layout pass per
    file); figures already fitted by ``tight_layout`` pass False and are drawn once.
    """
    formats = current_formats() if formats is None else check_formats(formats)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        atomic_write(
            path, lambda f, fmt=fmt: fig.savefig(f, format=fmt, dpi=150, bbox_inches="tight" if crop else None)
        )
        paths.append(path)
    plt.close(fig)
    return paths


def configuration_figure(panels: Sequence[dict], stem: str | Path, suptitle: str = "") -> list[Path]:
    """One row of configuration panels, equal in size, and one pair of λ colour bars for the figure; each dict
    holds scatter_configuration's keyword arguments."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n + 1.5, 4.3), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        scatter_configuration(ax, **{**panel, "colorbars": False})
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    add_lambda_colorbars(fig)
    return save_figure(fig, stem)


def add_lambda_colorbars(fig: plt.Figure, margin_in: float = 1.5) -> None:
    """One pair of λ colour bars (different class, same class) at the right of the figure, for all its panels.

    Call after the layout: the panels give up ``margin_in`` inches on the right, where the bars go, as
    high as the panels' middle 80%.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    width = fig.get_figwidth()
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    fig.subplots_adjust(right=1 - margin_in / width)
    bottom = min(ax.get_position().y0 for ax in axes)
    top = max(ax.get_position().y1 for ax in axes)
    height = top - bottom
    for i, (cmap, label) in enumerate(((DIFF_CMAP, "λ, different class"), (SAME_CMAP, "λ, same class"))):
        cax = fig.add_axes(
            [1 - (margin_in - 0.15 - 0.7 * i) / width, bottom + 0.1 * height, 0.12 / width, 0.8 * height]
        )
        bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=cax)
        bar.set_label(label, fontsize=8)
        bar.ax.tick_params(labelsize=7)


# Numbers against lambda, calibration and classifier geometry. Every function below takes the
# sections of ``analysis.json`` (or metrics.jsonl rows) as saved, so a figure can be redrawn from
# the files alone; several series (label, section) are overlaid to compare runs.

SERIES_COLORS = ("#5b2a86", "#e07b00", "#1b7f5b", "#3a6fb0", "#b03a48", "#6b6b6b")
IDEAL_STYLE = dict(color="0.35", linestyle="--", linewidth=1.0)


def _arr(values) -> np.ndarray:
    """A saved list (None for NaN) as a float array."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _band(ax: plt.Axes, x, mean, std, color: str, label: str) -> None:
    x, mean = _arr(x), _arr(mean)
    ok = np.isfinite(mean)
    ax.plot(x[ok], mean[ok], "o-", color=color, markersize=3, linewidth=1.4, label=label)
    if std is not None:
        s = _arr(std)
        ok &= np.isfinite(s)
        ax.fill_between(x[ok], (mean - s)[ok], (mean + s)[ok], color=color, alpha=0.18, linewidth=0)


def _finish(ax: plt.Axes, title: str, xlabel: str, ylabel: str, legend: bool, loc: str = "best") -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.25, linewidth=0.6)
    if legend:
        ax.legend(fontsize=7, frameon=False, loc=loc)


def draw_pair_probability(ax: plt.Axes, series: Sequence[tuple[str, dict]]) -> None:
    """Softmax p_a of different-class pairs against lambda (mean ± std per bin) and the ideal p_a = lambda."""
    ax.plot([0, 1], [0, 1], label="p_a = λ (mixup target)", **IDEAL_STYLE)
    for k, (label, conf) in enumerate(series):
        mae = conf.get("pair_prob_mae")
        text = f"{label} (|p_a−λ| = {mae:.3f})" if mae is not None else label
        _band(
            ax,
            conf["lambda_bin_centers"],
            conf["pair_prob_by_lambda"],
            conf.get("pair_prob_std_by_lambda"),
            SERIES_COLORS[k % len(SERIES_COLORS)],
            text,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.03, 1.03)
    _finish(ax, "different class: p_a against λ", "λ (weight of class a)", "softmax probability p_a", True)


def draw_same_class_cosine(ax: plt.Axes, series: Sequence[tuple[str, dict]]) -> None:
    """Same-class pairs: cos(h, w_a) per lambda bin (Theorem 3.1: 1, flat in lambda)."""
    ax.axhline(1.0, label="cos = 1 (Theorem 3.1)", **IDEAL_STYLE)
    ax.set_ylim(top=1.08)
    for k, (label, conf) in enumerate(series):
        spread = conf.get("same_cos_lambda_spread")
        text = f"{label} (spread over λ {spread:.3f})" if spread is not None else label
        _band(
            ax,
            conf["lambda_bin_centers"],
            conf["same_cos_by_lambda"],
            None,
            SERIES_COLORS[k % len(SERIES_COLORS)],
            text,
        )
    ax.set_xlim(0, 1)
    _finish(ax, "same class: cos(h, w_a) against λ", "λ", "cosine with the class's classifier row", True)


def draw_channel_position(ax: plt.Axes, series: Sequence[tuple[str, dict]]) -> None:
    """Different-class position t along the channel c_b -> c_a against lambda; t = lambda is linear mixing."""
    ax.plot([0, 1], [0, 1], label="t = λ (linear in the class means)", **IDEAL_STYLE)
    drawn = False
    for k, (label, conf) in enumerate(series):
        if conf.get("channel_position_by_lambda") is None:
            continue
        _band(
            ax,
            conf["lambda_bin_centers"],
            conf["channel_position_by_lambda"],
            conf.get("channel_position_std_by_lambda"),
            SERIES_COLORS[k % len(SERIES_COLORS)],
            label,
        )
        drawn = True
    ax.set_xlim(0, 1)
    _finish(ax, "different class: position along the channel", "λ", "t  (0: class-b mean, 1: class-a mean)", drawn)


def draw_channel_density(ax: plt.Axes, series: Sequence[tuple[str, dict]]) -> None:
    """Density of the channel position t of different-class pairs (sparse near the ends: Figure 1)."""
    drawn = False
    for k, (label, conf) in enumerate(series):
        if conf.get("position_hist_density") is None:
            continue
        drawn = True
        edges, dens = _arr(conf["position_hist_edges"]), _arr(conf["position_hist_density"])
        color = SERIES_COLORS[k % len(SERIES_COLORS)]
        ax.stairs(dens, edges, color=color, linewidth=1.4, label=label)
        ax.stairs(dens, edges, color=color, alpha=0.15, fill=True)
    for t, name in ((0.0, "class b"), (1.0, "class a")):
        ax.axvline(t, **IDEAL_STYLE)
        ax.annotate(
            name,
            (t, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -10),
            textcoords="offset points",
            fontsize=7,
            color="0.3",
            bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.85),
        )
    _finish(ax, "density along the channel", "t  (position between the class means)", "density", drawn)


def configuration_measures_figure(
    series: Sequence[tuple[str, dict]], stem: str | Path, suptitle: str = ""
) -> list[Path]:
    """Four panels from analysis.json's "configuration" sections: p_a, same-class cosine, channel position
    and its density, each against lambda (Theorem 3.1 and Figure 1 in numbers)."""
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 8.2))
    draw_pair_probability(axes[0, 0], series)
    draw_same_class_cosine(axes[0, 1], series)
    draw_channel_position(axes[1, 0], series)
    draw_channel_density(axes[1, 1], series)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem, crop=False)


def reliability_figure(series: Sequence[tuple[str, dict]], stem: str | Path, suptitle: str = "") -> list[Path]:
    """Reliability diagrams (one panel per series) from analysis.json's "calibration" sections.

    Bars: accuracy per confidence bin; hatched: the gap to the bin's mean confidence; the bin
    counts are drawn underneath on a log scale. Title: ECE and MCE (15 bins, Appendix C).
    """
    n = len(series)
    fig = plt.figure(figsize=(4.2 * n, 4.8))
    grid = fig.add_gridspec(2, n, height_ratios=(3, 1), hspace=0.08)
    for k, (label, cal) in enumerate(series):
        ax = fig.add_subplot(grid[0, k])
        hist = fig.add_subplot(grid[1, k], sharex=ax)
        edges = _arr(cal["bin_edges"])
        width = np.diff(edges)
        acc, conf, counts = _arr(cal["accuracy_by_bin"]), _arr(cal["confidence_by_bin"]), _arr(cal["counts"])
        ok = counts > 0
        color = SERIES_COLORS[k % len(SERIES_COLORS)]
        left, w = edges[:-1][ok], width[ok]
        ax.bar(
            left,
            acc[ok],
            width=w,
            align="edge",
            color=color,
            alpha=0.75,
            edgecolor="white",
            linewidth=0.6,
            label="accuracy",
        )
        ax.bar(
            left,
            (conf - acc)[ok],
            bottom=acc[ok],
            width=w,
            align="edge",
            facecolor="none",
            edgecolor="#c0392b",
            hatch="///",
            linewidth=0.6,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], label="perfect calibration", **IDEAL_STYLE)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelbottom=False)
        numbers = f"ECE {cal['ece']:.4f}   MCE {cal['mce']:.4f}   acc {100 * cal['accuracy']:.1f}%"
        _finish(ax, f"{label}\n{numbers}", "", "accuracy", False)
        hist.bar(edges[:-1], np.where(ok, counts, np.nan), width=width, align="edge", color=color, alpha=0.6)
        hist.set_yscale("log")
        _finish(hist, "", "confidence (top-1 softmax probability)", "count", False)
    # One legend under the panels, where it covers no bar (inside, any corner can hold a tall one).
    handles, labels = ax.get_legend_handles_labels()
    if n > 1:  # the bars take each run's colour: the legend's swatch is neutral
        handles[labels.index("accuracy")] = Patch(facecolor="0.55", alpha=0.75, label="accuracy (each run's colour)")
        labels[labels.index("accuracy")] = "accuracy (each run's colour)"
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=3, fontsize=8, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save_figure(fig, stem)


def confidence_by_lambda_figure(series: Sequence[tuple[str, dict]], stem: str | Path, suptitle: str = "") -> list[Path]:
    """Figure 4 made measurable, from analysis.json's "test_pairs" sections (their different_class part).

    Left: mean top-1 confidence of mixed test pairs against lambda, and the confidence of the mixup
    target itself, max(lambda, 1 - lambda). Right: misclassification rate against the dominant class.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.9))
    left.plot(*_target_confidence_line(), label="target max(λ, 1−λ)", **IDEAL_STYLE)
    for k, (label, pairs) in enumerate(series):
        group = pairs.get("different_class") if "different_class" in pairs else pairs
        if group is None:
            continue
        color = SERIES_COLORS[k % len(SERIES_COLORS)]
        _band(left, group["bin_centers"], group["confidence"], None, color, label)
        err = group.get("error_rate_overall")
        _band(
            right,
            group["bin_centers"],
            group["error_rate"],
            None,
            color,
            f"{label} (overall {100 * err:.1f}%)" if err is not None else label,
        )
    left.set_xlim(0, 1)
    left.set_ylim(0, 1.03)
    right.set_xlim(0, 1)
    right.set_ylim(bottom=0)
    _finish(left, "mixed test pairs: confidence", "λ", "mean top-1 confidence", True)
    _finish(
        right, "mixed test pairs: misclassification", "λ", "error rate (vs the dominant class)", True, loc="upper left"
    )
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem, crop=False)


def _target_confidence_line() -> tuple[np.ndarray, np.ndarray]:
    lam = np.array([0.0, 0.5, 1.0])
    return lam, np.maximum(lam, 1 - lam)


CLASSIFIER_PANELS = (
    ("classifier_norm_cv", "Std‖w‖ / Avg‖w‖", "norm CV (equinorm)"),
    ("classifier_cos_std", "Std cos(w_i, w_j)", "std of cosines (equiangular)"),
    ("classifier_cos_mean", "Avg cos(w_i, w_j)", "mean cosine vs −1/(C−1)"),
    ("classifier_etf_distance", "‖W − ETF‖ / ‖W‖", "distance to the nearest simplex ETF"),
)


def classifier_geometry_figure(
    histories: Sequence[tuple[str, Sequence[dict]]], stem: str | Path, mark_epoch: int | None = None, suptitle: str = ""
) -> list[Path]:
    """Figure 5: the classifier's convergence to a simplex ETF over epochs, from metrics.jsonl rows.

    Each history is (label, rows) with the rows as saved by training (``epoch`` and the
    ``classifier_*`` keys). ``mark_epoch`` draws a vertical line at the analysed checkpoint.
    """
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.4))
    for ax, (key, ylabel, title) in zip(axes.flat, CLASSIFIER_PANELS, strict=True):
        for k, (label, rows) in enumerate(histories):
            epochs = _arr([r.get("epoch") for r in rows])
            values = _arr([r.get(key) for r in rows])
            ok = np.isfinite(epochs) & np.isfinite(values)
            ax.plot(
                epochs[ok], values[ok], "-", color=SERIES_COLORS[k % len(SERIES_COLORS)], linewidth=1.5, label=label
            )
        etf_cos = next((rows[-1].get("classifier_etf_cos") for _, rows in histories if rows), None)
        if key == "classifier_cos_mean" and etf_cos is not None:
            ax.axhline(etf_cos, **IDEAL_STYLE, label="−1/(C−1) (simplex ETF)")
        if key != "classifier_cos_mean":
            ax.set_ylim(bottom=0)
        if mark_epoch is not None:
            ax.axvline(mark_epoch, color="0.6", linewidth=0.8, linestyle=":")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs are whole numbers
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        _finish(
            ax,
            title,
            "epoch",
            ylabel,
            key == "classifier_cos_mean" or (key == "classifier_norm_cv" and len(histories) > 1),
        )
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem, crop=False)


# What the training curves show: (metrics.jsonl key, panel title), one panel each.
TRAINING_CURVES = (
    ("train_loss", "training loss (mixed targets)"),
    ("test_accuracy", "test accuracy"),
    ("test_ece", "test ECE (15 bins)"),
    ("classifier_norm_cv", "classifier: Std(‖w_i‖) / Avg(‖w_i‖)"),
    ("classifier_cos_std", "classifier: Std of cos(w_i, w_j)"),
    ("classifier_etf_distance", "classifier: distance to a simplex ETF"),
)


def training_curves_figure(
    histories: Sequence[tuple[str, Sequence[dict]]], stem: str | Path, suptitle: str = ""
) -> list[Path]:
    """Per-epoch curves of one or more runs (metrics.jsonl rows): loss, test accuracy and ECE, classifier geometry.

    Epochs without a test evaluation (``train.eval_every``) are skipped in the test panels.
    """
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.4))
    for ax, (key, title) in zip(axes.flat, TRAINING_CURVES, strict=True):
        for k, (label, rows) in enumerate(histories):
            epochs = _arr([r.get("epoch") for r in rows])
            values = _arr([r.get(key) for r in rows])
            ok = np.isfinite(epochs) & np.isfinite(values)
            ax.plot(
                epochs[ok],
                values[ok],
                "-",
                marker="." if ok.sum() < 40 else None,
                label=label,
                color=SERIES_COLORS[k % len(SERIES_COLORS)],
                linewidth=1.5,
            )
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        _finish(ax, title, "epoch", "", len(histories) > 1)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem, crop=False)
