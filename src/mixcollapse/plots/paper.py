"""The paper's grids of panels, as ``mixcollapse reproduce`` lays them out (Figures 1-3, 5, 7-12).

Drawing only: every number comes from the experiment's step (``mixcollapse.experiments.reproduce``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from mixcollapse.plots.figures import (
    DIFF_CMAP,
    SAME_CMAP,
    add_lambda_colorbars,
    draw_classifier_rows,
    save_figure,
    scatter_configuration,
)


def _finish(fig, suptitle: str, lambda_bars: bool = False) -> None:
    """Tight layout, then the suptitle just above the highest panel (its title and colour bars included).

    Placed after the layout rather than reserved as a margin: panels of equal aspect do not fill
    their slots, and a fixed margin left a gap between the suptitle and a single panel. The figures
    are saved with a tight bounding box, so the space above the suptitle is cropped.
    """
    fig.tight_layout(h_pad=2.0)  # row titles clear of the row above
    if lambda_bars:
        add_lambda_colorbars(fig)
    if not suptitle:
        return
    width = max(40, int(fig.get_figwidth() * 12.5))  # characters at 11 pt: the title must not widen the figure
    suptitle = "\n".join(textwrap.fill(line, width) for line in suptitle.splitlines())
    renderer = fig.canvas.get_renderer()
    top = max(ax.get_tightbbox(renderer).y1 for ax in fig.axes if ax.get_visible() and ax.axison) / fig.bbox.height
    fig.suptitle(suptitle, fontsize=11, y=top + 0.08 / fig.get_figheight(), va="bottom")


def draw_configuration_grid(rows: list[list[dict]], stem: Path, suptitle: str = "") -> list[Path]:
    """Rows of configuration panels (plots.scatter_configuration's arguments) in one figure."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.3 * n_cols + 1.5, 4.8 * n_rows), squeeze=False)
    for i in range(n_rows):
        for j in range(n_cols):
            if j < len(rows[i]):
                scatter_configuration(axes[i][j], **{**rows[i][j], "colorbars": False})
            else:
                axes[i][j].axis("off")
    _finish(fig, suptitle, lambda_bars=True)
    return save_figure(fig, stem)


def draw_trajectories(
    ax,
    xy: np.ndarray,
    lam: np.ndarray,
    same: np.ndarray,
    classifier_xy: np.ndarray,
    title: str = "",
    class_names: Sequence[str] | None = None,
) -> None:
    """Paths (P, L, 2) coloured by lambda (plots' same-class and different-class maps), classifiers in black."""
    xy = np.asarray(xy)
    for path, value, is_same in zip(xy, np.asarray(lam), np.asarray(same, dtype=bool), strict=False):
        colour = (SAME_CMAP if is_same else DIFF_CMAP)(float(value))
        ax.plot(path[:, 0], path[:, 1], "-", color=colour, linewidth=1.3, alpha=0.9)
        ax.scatter(path[1:-1, 0], path[1:-1, 1], color=colour, s=10, zorder=3)
        ax.scatter(
            path[-1:, 0], path[-1:, 1], color=colour, s=45, marker="*", edgecolors="black", linewidths=0.3, zorder=4
        )
    draw_classifier_rows(
        ax, classifier_xy, float(np.abs(xy).max()) if xy.size else 1.0, class_names, linewidth=1.0, markersize=4
    )
    ax.plot(0, 0, "k+", markersize=8)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    cmap = SAME_CMAP if np.asarray(same, dtype=bool).all() else DIFF_CMAP
    bar = ax.figure.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("λ (weight of the first image)", fontsize=7)
    bar.ax.tick_params(labelsize=6)


def draw_readout(
    ax, layer_names: Sequence[str], per_lambda: dict, class_names: Sequence[str], title: str = "", note: str = ""
) -> None:
    """The final classifier read at every layer: mean p of the first image's class (solid) and of the second's
    (dashed) per layer, one colour per lambda (the different-class map); ``note`` printed under the x axis."""
    x = np.arange(len(layer_names))
    for key, row in per_lambda.items():
        colour = DIFF_CMAP(float(key))
        ax.plot(x, row["p_first"], "-", color=colour, linewidth=1.4, marker=".", markersize=4)
        ax.plot(x, row["p_second"], "--", color=colour, linewidth=1.4)
    ax.set_xticks(x)
    ax.set_xticklabels([n.replace("block ", "") if n.startswith("block") else n for n in layer_names], fontsize=7)
    ax.set_xlabel(
        ("block" if any(n.startswith("block") for n in layer_names) else "layer") + (f"\n{note}" if note else ""),
        fontsize=8,
    )
    ax.set_ylabel("classifier's probability (mean over pairs)", fontsize=8)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    ax.plot([], [], "k-", label=f"p({class_names[0]}), first image")
    ax.plot([], [], "k--", label=f"p({class_names[1]}), second image")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=8)
    bar = ax.figure.colorbar(ScalarMappable(Normalize(0, 1), DIFF_CMAP), ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("λ (weight of the first image)", fontsize=7)
    bar.ax.tick_params(labelsize=6)


def draw_trajectory_grid(rows: list[list[dict]], stem: Path, suptitle: str = "") -> list[Path]:
    """Rows of trajectory panels (draw_trajectories' arguments; a panel with ``per_lambda`` is a read-out panel,
    draw_readout's); paths start at the origin (+), end at stars."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.8 * n_cols, 4.8 * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            (draw_readout if "per_lambda" in panel else draw_trajectories)(axes[i][j], **panel)
        for j in range(len(row), n_cols):
            axes[i][j].axis("off")
    _finish(fig, suptitle)
    return save_figure(fig, stem)


def draw_classifier_curves(
    curves: dict[str, dict], stem: Path, suptitle: str, dataset_titles: dict[str, str], arch_titles: dict[str, str]
) -> list[Path]:
    """Figure 5's panels: norm CV and cosine std against epoch, for WRN and for ViT (those present), one line per
    dataset. ``curves``: {run: {arch, dataset, epoch, norm_cv, cos_std, model?}}; titles name datasets and archs."""
    archs = [a for a in ("wrn", "vit") if any(c["arch"] == a for c in curves.values())] or ["wrn", "vit"]
    fig, axes = plt.subplots(1, 2 * len(archs), figsize=(4.75 * 2 * len(archs), 3.9), squeeze=False)
    axes = axes[0]
    panels = [(arch, what) for arch in archs for what in ("norm_cv", "cos_std")]
    labels = {"norm_cv": "Std(‖w_i‖) / Avg(‖w_i‖)", "cos_std": "Std of cos(w_i, w_j), i ≠ j"}
    for ax, (arch, what) in zip(axes, panels, strict=False):
        models = []
        for c in curves.values():
            if c["arch"] == arch and c["epoch"]:
                ax.plot(c["epoch"], c[what], label=dataset_titles[c["dataset"]], marker=".", linewidth=1.5)
                models.append(c.get("model", arch_titles[arch]))
        ax.set_title(f"{', '.join(dict.fromkeys(models)) or arch_titles[arch]}: {labels[what]}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        if models:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    _finish(fig, suptitle)
    return save_figure(fig, stem)
