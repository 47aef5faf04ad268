"""Figures: every plot draws saved numbers and computes nothing.

Figure-1-style configuration scatters use two separate sequential colour maps with their own
colour bars, one for same-class and one for different-class mixup points, and two marker
shapes. Neither map is black (or near-white) anywhere, so lambda = 0.5 is never ambiguous
between the two kinds of points, which the paper's figures were criticised for.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from mpl_toolkits.axes_grid1 import make_axes_locatable  # noqa: E402


def _truncated(name: str, lo: float, hi: float) -> LinearSegmentedColormap:
    base = plt.get_cmap(name)
    return LinearSegmentedColormap.from_list(f"{name}_{lo}_{hi}", base(np.linspace(lo, hi, 256)))


SAME_CMAP = _truncated("Greens", 0.3, 0.95)  # light -> dark green: no hue shared with DIFF_CMAP
DIFF_CMAP = _truncated("plasma", 0.12, 0.92)  # purple -> orange -> yellow, no black, no white


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
) -> None:
    """Draw one configuration panel: projected features coloured by lambda, classifiers in black."""
    xy, lam, same = np.asarray(xy), np.asarray(lam), np.asarray(same, dtype=bool)
    order = np.argsort(np.abs(lam - 0.5))[::-1]  # lambda near 0.5 drawn last, on top
    xy, lam, same = xy[order], lam[order], same[order]
    diff = ax.scatter(*xy[~same].T, c=lam[~same], cmap=DIFF_CMAP, vmin=0, vmax=1, s=point_size,
                      marker="o", linewidths=0, alpha=0.8)
    same_pts = ax.scatter(*xy[same].T, c=lam[same], cmap=SAME_CMAP, vmin=0, vmax=1, s=point_size * 1.5,
                          marker="s", linewidths=0, alpha=0.8)
    radius = float(np.abs(xy).max()) if len(xy) else 1.0
    vertices = np.asarray(classifier_xy, dtype=float)
    vertices = vertices / np.linalg.norm(vertices, axis=1, keepdims=True) * radius * 1.08
    for k, (vx, vy) in enumerate(vertices):
        ax.plot([0, vx], [0, vy], color="black", linewidth=1.2)
        ax.plot(vx, vy, "o", color="black", markersize=5)
        if class_names is not None:
            ax.annotate(str(class_names[k]), (vx, vy), textcoords="offset points", xytext=(4, 4), fontsize=8)
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


def save_figure(fig: plt.Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as stem.png and stem.pdf, each written to a temporary file first, then renamed."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        paths.append(path)
    plt.close(fig)
    return paths


def configuration_figure(panels: Sequence[dict], stem: str | Path, suptitle: str = "") -> list[Path]:
    """One row of configuration panels; each dict holds scatter_configuration's keyword arguments."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(5.6 * n, 4.0), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        scatter_configuration(ax, **panel)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save_figure(fig, stem)
