"""The figures of one analysis (``mixcollapse analyze``), drawn from the numbers it measured."""

from __future__ import annotations

from collections.abc import Collection, Sequence
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


def draw_analysis(
    fig_dir: Path,
    xy: np.ndarray,
    pairs,
    classifier_xy: np.ndarray,
    classes: Sequence[int],
    names: Sequence[str],
    title: str,
    bn_mode: str,
    sections: dict,
    metrics_rows: Sequence[dict] | None,
    checkpoint_epoch: int | None,
    seed: int,
    only: Collection[str] = FIGURES,
) -> dict[str, list[str]]:
    """Every figure of one analysis (those of ``FIGURES`` named in ``only``); returns {figure name: [files]}.

    ``xy`` (N, 2): the projected features (Appendix B.2) of ``pairs`` (a PairSet: lam, class_a,
    class_b, index_a, index_b); ``classifier_xy`` (3, 2): the projected classifier rows of
    ``classes``; ``sections``: the JSON-ready configuration, calibration and test_pairs sections
    (None where not measured); ``metrics_rows``: the run's per-epoch rows for Figure 5.
    """
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown analysis figure {unknown[0]!r}; choose from {', '.join(FIGURES)}")
    out: dict[str, list[Path]] = {}
    shown = np.arange(len(xy))
    if len(xy) > MAX_SCATTER_POINTS:
        shown = np.sort(np.random.default_rng(seed).choice(len(xy), MAX_SCATTER_POINTS, replace=False))
    lam = np.asarray(pairs.lam)
    same = np.asarray(pairs.same)
    class_names = [names[c] for c in classes]
    if "configuration" in only:
        out["configuration"] = configuration_figure(
            [
                dict(
                    xy=xy[shown],
                    lam=lam[shown],
                    same=same[shown],
                    classifier_xy=classifier_xy,
                    title=f"{title}\nBN: {bn_mode}",
                    class_names=class_names,
                )
            ],
            fig_dir / "configuration",
        )
    if "configuration_html" in only:
        out["configuration_html"] = [
            configuration_html(
                fig_dir / "configuration.html",
                xy,
                lam,
                pairs.class_a,
                pairs.class_b,
                pairs.index_a,
                pairs.index_b,
                class_names=list(names),
                classifier_xy=classifier_xy,
                classifier_labels=class_names,
                title=f"{title} (BN: {bn_mode})",
                seed=seed,
            )
        ]
    if "configuration_measures" in only:
        out["configuration_measures"] = configuration_measures_figure(
            [(title, sections["configuration"])],
            fig_dir / "configuration_measures",
            suptitle=f"{title}: the configuration in numbers",
        )
    if "reliability" in only and sections.get("calibration") is not None:
        out["reliability"] = reliability_figure([(title, sections["calibration"])], fig_dir / "reliability")
    test_pairs = sections.get("test_pairs")
    if "confidence_by_lambda" in only and test_pairs is not None and test_pairs.get("different_class") is not None:
        out["confidence_by_lambda"] = confidence_by_lambda_figure(
            [(title, test_pairs)],
            fig_dir / "confidence_by_lambda",
            suptitle=f"{title}: mixed test pairs of different classes (Figure 4)",
        )
    if "classifier_geometry" in only and metrics_rows:
        out["classifier_geometry"] = classifier_geometry_figure(
            [(title, metrics_rows)],
            fig_dir / "classifier_geometry",
            mark_epoch=checkpoint_epoch,
            suptitle=f"{title}: classifier W during training (Figure 5)",
        )
    return {k: [str(p) for p in v] for k, v in out.items()}
