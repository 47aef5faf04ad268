"""An interactive configuration scatter: one self-contained HTML file beside the static figures.

Draws saved numbers only (the projected points of Appendix B.2 and the pairs' metadata), like
``plots``. Hovering a point shows its two classes, lambda and the dataset indices of the two
source images, so an odd point can be traced back to its images; clicking a legend entry hides
or shows the same-class or the different-class points (double-click isolates one group). The
colours follow the static figure (green map for same-class, purple-orange for different-class,
each with its own colour bar). plotly.js is embedded in the file (no CDN): it opens offline.

Large pair sets are thinned to ``max_points`` randomly chosen points (seeded; the title says
how many are shown) so the file stays small enough for a browser; the static figure and every
number use all pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mixcollapse.files import atomic_write_text

# The static figure's colour maps (plots.SAME_CMAP: Greens 0.3-0.95, plots.DIFF_CMAP: plasma
# 0.12-0.92), sampled for plotly.
_SAME_SCALE = [[0.0, "#a0d99b"], [0.5, "#41ab5d"], [1.0, "#00441b"]]
_DIFF_SCALE = [[0.0, "#3e049c"], [0.25, "#8606a6"], [0.5, "#cc4778"], [0.75, "#f48849"], [1.0, "#f4ee27"]]

MAX_POINTS = 20000


def configuration_html(
    path: str | Path,
    xy: np.ndarray,
    lam: np.ndarray,
    class_a: np.ndarray,
    class_b: np.ndarray,
    index_a: np.ndarray,
    index_b: np.ndarray,
    *,
    class_names: Sequence[str] | dict | None = None,
    classifier_xy: np.ndarray | None = None,
    classifier_labels: Sequence[str] | None = None,
    title: str = "",
    max_points: int = MAX_POINTS,
    seed: int = 0,
) -> Path:
    """Write the interactive scatter of projected mixup-pair features ``xy`` (N, 2) to ``path`` (.html).

    ``class_a``/``class_b`` are model class indices, named through ``class_names`` (a list indexed
    by class, or a dict); ``classifier_xy`` (k, 2), optional, are the projected classifier rows,
    drawn as black spokes scaled to the points like the static figure. Written atomically.
    """
    import plotly.graph_objects as go  # plotly is heavy to import; only this figure needs it

    xy = np.asarray(xy, dtype=float)
    lam = np.asarray(lam, dtype=float)
    class_a, class_b = np.asarray(class_a), np.asarray(class_b)
    index_a, index_b = np.asarray(index_a), np.asarray(index_b)
    n = len(xy)
    shown = np.arange(n)
    if n > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))

    names = {
        int(c): str(int(c)) if class_names is None else str(class_names[int(c)])
        for c in np.unique(np.concatenate([class_a, class_b]))
    }
    fig = go.Figure()
    same = class_a == class_b
    groups = (("same class", same, _SAME_SCALE, "square", 1.0), ("different class", ~same, _DIFF_SCALE, "circle", 1.22))
    for label, mask, scale, symbol, bar_x in groups:
        idx = shown[mask[shown]]
        idx = idx[np.argsort(-np.abs(lam[idx] - 0.5), kind="stable")]  # lambda near 0.5 drawn last, on top
        names_a, names_b = [names[int(c)] for c in class_a[idx]], [names[int(c)] for c in class_b[idx]]
        hover = (names_a, names_b, index_a[idx], index_b[idx])
        fig.add_traces(_group(go, xy, lam, idx, label, int(mask.sum()), (scale, symbol, bar_x), hover))
    if classifier_xy is not None:
        radius = float(np.abs(xy).max()) if n else 1.0
        for trace in _classifier_traces(go, np.asarray(classifier_xy, dtype=float), radius, classifier_labels):
            fig.add_trace(trace)
    _layout(fig, title, f"{len(shown)} of {n} pairs shown" if len(shown) < n else f"{n} pairs")
    return _write_html(fig, Path(path))


def _layout(fig, title: str, subtitle: str) -> None:
    """Title, hidden axes of equal scale, the legend at the top left, and a size that follows the window."""
    fig.update_layout(
        title=dict(
            text=f"{title}<br><sup>{subtitle}; click a legend entry to hide or show a group</sup>"
            if title
            else subtitle
        ),
        xaxis=dict(visible=False, scaleanchor="y", scaleratio=1),
        yaxis=dict(visible=False),
        plot_bgcolor="white",
        legend=dict(x=0.0, y=1.0, bgcolor="rgba(255,255,255,0.7)"),
        autosize=True,  # fills the window (the page sets the size); equal axis scales keep the geometry true
        margin=dict(l=20, r=20, t=80, b=20),
    )


def _write_html(fig, path: Path) -> Path:
    """``fig`` as one self-contained HTML file (plotly.js inlined), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    html = fig.to_html(
        include_plotlyjs=True,
        full_html=True,
        include_mathjax=False,
        default_width="100%",
        default_height="95vh",
        config={"displaylogo": False, "scrollZoom": True, "responsive": True},
    )
    return atomic_write_text(path, html)


def _group(go, xy, lam, idx, label: str, total: int, style: tuple, hover: tuple) -> list:
    """One group of pairs (same or different class): a WebGL scatter coloured by lambda with hover text (the two
    classes and images), and its legend entry."""
    scale, symbol, bar_x = style
    names_a, names_b, index_a, index_b = hover
    columns = [names_a, names_b, np.round(lam[idx], 4).astype(str), index_a.astype(str), index_b.astype(str)]
    custom = np.stack(columns, axis=1) if len(idx) else np.empty((0, 5), dtype=str)
    colorbar = dict(title=dict(text=f"λ, {label}", side="right"), x=bar_x, len=0.8, thickness=12)
    marker = dict(
        color=lam[idx],
        colorscale=scale,
        cmin=0.0,
        cmax=1.0,
        size=5 if symbol == "circle" else 6,
        symbol=symbol,
        opacity=0.85,
        colorbar=colorbar,
    )
    hovertemplate = (
        "class a: %{customdata[0]} (image %{customdata[3]})<br>class b: %{customdata[1]} "
        "(image %{customdata[4]})<br>λ = %{customdata[2]}<extra>" + label + "</extra>"
    )
    points = go.Scattergl(
        x=xy[idx, 0],
        y=xy[idx, 1],
        mode="markers",
        name=f"{label} ({total})",
        legendgroup=label,
        showlegend=False,
        marker=marker,
        customdata=custom,
        hovertemplate=hovertemplate,
    )
    # The legend entry of its own, in the colour of lambda = 0.5: a trace coloured by an array would show the
    # colour of whichever point happens to come first. Clicking it still hides or shows the whole group.
    legend = go.Scattergl(
        x=[None],
        y=[None],
        mode="markers",
        name=f"{label} ({total})",
        legendgroup=label,
        hoverinfo="skip",
        marker=dict(color=dict(scale)[0.5], symbol=symbol, size=9),
    )
    return [points, legend]


def _classifier_traces(go, vertices: np.ndarray, radius: float, labels: Sequence[str] | None) -> list:
    """The projected classifier rows as black spokes from the origin, scaled to the points, with their labels."""
    vertices = vertices / np.linalg.norm(vertices, axis=1, keepdims=True) * radius * 1.08
    xs, ys = [], []
    for vx, vy in vertices:
        xs += [0.0, vx, None]
        ys += [0.0, vy, None]
    labels = list(labels) if labels is not None else [""] * len(vertices)
    return [
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            line=dict(color="black", width=1.5),
            name="classifier rows",
            legendgroup="classifier",
            hoverinfo="skip",
        ),
        go.Scatter(
            x=vertices[:, 0],
            y=vertices[:, 1],
            mode="markers+text",
            text=labels,
            textposition="top right",
            marker=dict(color="black", size=8),
            legendgroup="classifier",
            showlegend=False,
            hovertemplate="classifier row of %{text}<extra></extra>",
        ),
    ]
