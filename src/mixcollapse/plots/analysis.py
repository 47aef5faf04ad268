"""The figures of one analysis (``mixcollapse analyze``), drawn from the numbers it measured."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixcollapse.plots.figures import (
    classifier_geometry_figure,
    confidence_by_lambda_figure,
    configuration_figure,
    configuration_measures_figure,
    reliability_figure,
)
from mixcollapse.plots.interactive import configuration_html

MAX_SCATTER_POINTS = 100_000  # static scatter: more points only hide each other; the numbers use all pairs
FIGURES = (
    "configuration",
    "configuration_html",
    "configuration_measures",
    "reliability",
    "confidence_by_lambda",
    "classifier_geometry",
)


@dataclass(frozen=True)
class AnalysisDrawing:
    """What the figures of one analysis are drawn from.

    ``xy`` (N, 2): the projected features (Appendix B.2) of ``pairs`` (a PairSet: lam, class_a,
    class_b, index_a, index_b); ``classifier_xy`` (3, 2): the projected classifier rows of ``classes``;
    ``names``: every class's name; ``sections``: the JSON-ready configuration, calibration and test_pairs
    sections (None where not measured); ``metrics_rows``: the run's per-epoch rows for Figure 5.
    """

    xy: np.ndarray
    pairs: object
    classifier_xy: np.ndarray
    classes: Sequence[int]
    names: Sequence[str]
    title: str
    bn_mode: str
    sections: dict
    metrics_rows: Sequence[dict] | None = None
    checkpoint_epoch: int | None = None
    seed: int = 0

    @property
    def class_names(self) -> list[str]:
        return [self.names[c] for c in self.classes]


def draw_analysis(fig_dir: Path, d: AnalysisDrawing, only: Collection[str] = FIGURES) -> dict[str, list[str]]:
    """Every figure of one analysis (those of ``FIGURES`` named in ``only``); returns {figure name: [files]}.

    A figure whose numbers were not measured (no test set, no per-epoch rows) is left out.
    """
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown analysis figure {unknown[0]!r}; choose from {', '.join(FIGURES)}")
    out = {name: _DRAW[name](fig_dir, d) for name in FIGURES if name in only}
    return {k: [str(p) for p in v] for k, v in out.items() if v is not None}


def _configuration(fig_dir: Path, d: AnalysisDrawing) -> list[Path]:
    shown = np.arange(len(d.xy))
    if len(d.xy) > MAX_SCATTER_POINTS:
        shown = np.sort(np.random.default_rng(d.seed).choice(len(d.xy), MAX_SCATTER_POINTS, replace=False))
    lam, same = np.asarray(d.pairs.lam), np.asarray(d.pairs.same)
    panel = dict(
        xy=d.xy[shown],
        lam=lam[shown],
        same=same[shown],
        classifier_xy=d.classifier_xy,
        title=f"{d.title}\nBN: {d.bn_mode}",
        class_names=d.class_names,
    )
    return configuration_figure([panel], fig_dir / "configuration")


def _configuration_html(fig_dir: Path, d: AnalysisDrawing) -> list[Path]:
    p = d.pairs
    return [
        configuration_html(
            fig_dir / "configuration.html",
            d.xy,
            np.asarray(p.lam),
            p.class_a,
            p.class_b,
            p.index_a,
            p.index_b,
            class_names=list(d.names),
            classifier_xy=d.classifier_xy,
            classifier_labels=d.class_names,
            title=f"{d.title} (BN: {d.bn_mode})",
            seed=d.seed,
        )
    ]


def _configuration_measures(fig_dir: Path, d: AnalysisDrawing) -> list[Path]:
    return configuration_measures_figure(
        [(d.title, d.sections["configuration"])],
        fig_dir / "configuration_measures",
        suptitle=f"{d.title}: the configuration in numbers",
    )


def _reliability(fig_dir: Path, d: AnalysisDrawing) -> list[Path] | None:
    calibration = d.sections.get("calibration")
    return None if calibration is None else reliability_figure([(d.title, calibration)], fig_dir / "reliability")


def _confidence_by_lambda(fig_dir: Path, d: AnalysisDrawing) -> list[Path] | None:
    test_pairs = d.sections.get("test_pairs")
    if test_pairs is None or test_pairs.get("different_class") is None:
        return None
    return confidence_by_lambda_figure(
        [(d.title, test_pairs)],
        fig_dir / "confidence_by_lambda",
        suptitle=f"{d.title}: mixed test pairs of different classes (Figure 4)",
    )


def _classifier_geometry(fig_dir: Path, d: AnalysisDrawing) -> list[Path] | None:
    if not d.metrics_rows:
        return None
    return classifier_geometry_figure(
        [(d.title, d.metrics_rows)],
        fig_dir / "classifier_geometry",
        mark_epoch=d.checkpoint_epoch,
        suptitle=f"{d.title}: classifier W during training (Figure 5)",
    )


_DRAW = {
    "configuration": _configuration,
    "configuration_html": _configuration_html,
    "configuration_measures": _configuration_measures,
    "reliability": _reliability,
    "confidence_by_lambda": _confidence_by_lambda,
    "classifier_geometry": _classifier_geometry,
}
