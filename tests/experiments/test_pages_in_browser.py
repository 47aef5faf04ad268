"""The HTML pages, opened in headless Chromium: an analysis's configuration.html (plotly, embedded) and the report of
a tiny reproduction (figures embedded as PNG). Offline, free of console errors, drawn, and 1,400 px wide at most."""

from __future__ import annotations

import pytest

from browser import drawn, hues, open_page
from mixcollapse.cli import main

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """configuration.html of `mixcollapse analyze` on a tiny digits run; report.html of a tiny `reproduce fig1`."""
    out = tmp_path_factory.mktemp("pages")
    small = ["data.train_limit=384", "train.batch_size=64", "model.hidden=32", "train.progress=false", "train.epochs=2"]
    assert main(["train", "--preset", "digits", "--out", str(out / "run"), *small]) == 0
    assert main(["analyze", str(out / "run")]) == 0
    tiny = ["reproduce", "fig1", "--scale", "tiny", "--datasets", "fashionmnist", "--out", str(out / "fig1")]
    assert main([*tiny, "--data-root", str(out / "no-real-data"), "--launcher", "inprocess"]) == 0
    assert main(["report", str(out / "fig1")]) == 0
    return {
        "configuration": out / "run" / "analysis" / "last" / "figures" / "configuration.html",
        "report": out / "fig1" / "report.html",
    }


def test_the_interactive_configuration_draws_its_points_offline(pages):
    with open_page(pages["configuration"]) as loaded:
        assert loaded.errors == [] and loaded.refused == []
        assert all(url.startswith(("file:", "data:")) for url in loaded.requests), loaded.requests
        area = loaded.pixels(".js-plotly-plot .nsewdrag")  # the plot area, where WebGL draws the pairs
        ink, colours = drawn(area)
        assert ink > 0.02 and colours > 50, (ink, colours)
        shares = hues(area)  # same-class pairs in greens, different-class ones in purple to orange
        assert shares["green"] > 0.005 and shares["warm"] > 0.005, shares
        assert loaded.horizontal_overflow() <= 0


def test_the_report_shows_every_figure_offline_and_fits_the_window(pages):
    with open_page(pages["report"]) as loaded:
        assert loaded.errors == [] and loaded.refused == []
        assert all(url.startswith(("file:", "data:")) for url in loaded.requests), loaded.requests
        images = loaded.page.locator("img")
        assert images.count() >= 1
        assert loaded.page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        figure = loaded.pixels(".fig img")  # fig1: the WRN and ViT configurations
        ink, colours = drawn(figure)
        assert ink > 0.03 and colours > 50 and min(hues(figure).values()) > 0.005, (ink, colours, hues(figure))
        assert loaded.horizontal_overflow() <= 0
