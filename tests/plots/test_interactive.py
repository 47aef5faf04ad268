"""The interactive scatter: one self-contained HTML file, hover text, toggleable groups, thinning."""

import base64
import json
import re

import numpy as np
import pytest

from mixcollapse.plots.interactive import configuration_html


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    n = 60
    class_a = np.repeat([0, 0, 3, 3, 7, 7], 10)
    class_b = np.repeat([0, 3, 3, 7, 7, 0], 10)
    return dict(
        xy=rng.normal(size=(n, 2)),
        lam=rng.uniform(size=n),
        class_a=class_a,
        class_b=class_b,
        index_a=np.arange(n) + 1000,
        index_b=np.arange(n) + 5000,
    )


def _figure_json(html: str, part: int = 0):
    """What plotly writes into the page, Plotly.newPlot(id, data, layout, config): the data (``part=0``), the
    layout (1)."""
    body = html[html.index("Plotly.newPlot(") :]
    at = body.index("[")
    decoder = json.JSONDecoder()
    value, end = decoder.raw_decode(body[at:])
    if part == 1:
        rest = body[at + end :]
        value, _ = decoder.raw_decode(rest[rest.index("{") :])
    return value


def _values(array) -> np.ndarray:
    """plotly >= 6 writes numeric arrays as {"dtype", "bdata": base64}; older versions as lists."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)


def test_html_is_self_contained_with_hover_and_groups(tmp_path, points):
    names = [f"class{k}" for k in range(10)]
    path = configuration_html(
        tmp_path / "out" / "configuration.html",
        **points,
        class_names=names,
        classifier_xy=np.array([[0, 1], [-0.87, -0.5], [0.87, -0.5]]),
        classifier_labels=["class0", "class3", "class7"],
        title="digits",
    )
    html = path.read_text()
    assert "<html" in html and "plotly" in html.lower()
    # No script fetched from anywhere: plotly.js is inline.
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?https?:", html, flags=re.I)
    assert len(html) > 1_000_000  # the embedded library
    traces = _figure_json(html)
    grouped = [t for t in traces if t.get("legendgroup") in ("same class", "different class")]
    groups = [t for t in grouped if t.get("showlegend") is False]  # the points, coloured by lambda
    legend = {t["legendgroup"]: t for t in grouped if t.get("showlegend", True)}
    assert {t["legendgroup"] for t in groups} == set(legend) == {"same class", "different class"}
    # each group has one legend entry to toggle it, in the colour of lambda = 0.5 whatever point comes first
    assert legend["different class"]["marker"]["color"] == "#cc4778"
    assert legend["same class"]["marker"]["color"] == "#41ab5d"
    assert legend["same class"]["name"] == "same class (30)"
    same = next(t for t in groups if t["legendgroup"] == "same class")
    diff = next(t for t in groups if t["legendgroup"] == "different class")
    assert len(_values(same["x"])) == 30 and len(_values(diff["x"])) == 30
    assert "%{customdata[2]}" in same["hovertemplate"] and "image %{customdata[3]}" in same["hovertemplate"]
    # hover data: class names, lambda and both source images
    rows = [tuple(r) for r in diff["customdata"]]
    assert ("class0", "class3") == rows[0][:2] or any(r[:2] == ("class0", "class3") for r in rows)
    i = int(np.flatnonzero((points["class_a"] == 3) & (points["class_b"] == 7))[0])
    assert (names[3], names[7], str(round(points["lam"][i], 4)), str(1000 + i), str(5000 + i)) in rows
    assert not list((tmp_path / "out").glob(".*tmp"))
    # The plot fills the window: no fixed width in the layout, a responsive div of the page's full width.
    layout = _figure_json(html, part=1)
    assert "width" not in layout and layout.get("autosize") is True
    assert "width:100%" in html.replace(" ", "")


def test_large_sets_are_thinned_reproducibly(tmp_path, points):
    a = configuration_html(tmp_path / "a.html", **points, max_points=25, seed=1).read_text()
    b = configuration_html(tmp_path / "b.html", **points, max_points=25, seed=1).read_text()
    groups = ("same class", "different class")
    shown = sum(
        len(_values(t["x"])) for t in _figure_json(a) if t.get("legendgroup") in groups and t.get("showlegend") is False
    )
    assert shown == 25 and "25 of 60 pairs shown" in a
    assert _figure_json(a) == _figure_json(b)
