"""analyze_run: a run directory's checkpoint through measure_model, with the run's history."""

import json

import pytest

from mixcollapse.analysis.measure import ANALYSIS_FILE


def test_analyze_run_wraps_measure_model_with_the_run_history(tmp_path, tiny_config):
    from mixcollapse.analysis.run import analyze_run
    from mixcollapse.training.loop import train

    run = tmp_path / "run"
    train(
        tiny_config(
            "train.epochs=2",
            "analysis.pairs_per_class_pair=10",
            "analysis.test_pairs=100",
            "analysis.recalibrate_batches=2",
            "data.test_limit=100",
        ),
        run,
    )
    result = analyze_run(run, device="cpu", progress=False, draw=False)
    s = json.loads((run / "analysis" / "last" / ANALYSIS_FILE).read_text())
    assert s == result.summary and s["checkpoint"].endswith("last.pt") and s["dataset"] == "digits"
    assert s["classifier"]["history"]["epoch"] == [1, 2]
    assert s["configuration"]["ufm"]["weight_decay"] == 1e-4  # the run's train.weight_decay
    assert s["bn"]["pairs"] == "recalibrate" and s["calibration"]["num_samples"] == 100
    shown = analyze_run(run, device="cpu", progress=False, draw=False)  # asked again: read back, not measured
    assert shown.summary == result.summary
    with pytest.raises(FileExistsError, match=r"other settings \(pairs_per_class_pair: 10 -> 12\).*overwrite=True"):
        analyze_run(run, device="cpu", progress=False, draw=False, overrides=["analysis.pairs_per_class_pair=12"])
    # Read back from disk, the analysis is the one returned.
    from mixcollapse.analysis.measure import load_analysis

    again = load_analysis(run / "analysis" / "last")
    assert again.summary == result.summary and (again.xy == result.xy).all()
    assert (again.features.lam == result.features.lam).all()


def test_only_the_figures_asked_for_are_drawn(tmp_path, tiny_config):
    from mixcollapse.analysis.run import analyze_run
    from mixcollapse.training.loop import train

    run = tmp_path / "run"
    train(
        tiny_config(
            "train.epochs=1",
            "analysis.pairs_per_class_pair=10",
            "analysis.test_pairs=50",
            "analysis.recalibrate_batches=2",
            "data.test_limit=60",
        ),
        run,
    )
    result = analyze_run(run, device="cpu", progress=False, draw=("reliability", "configuration"))
    figures = result.summary["figure_files"]
    assert sorted(figures) == ["configuration", "reliability"]
    assert sorted(p.name for p in (run / "analysis" / "last" / "figures").iterdir()) == [
        "configuration.png",
        "reliability.png",
    ]
    with pytest.raises(ValueError, match="unknown analysis figure 'scatter'; choose from configuration"):
        analyze_run(run, device="cpu", progress=False, draw=("scatter",), overwrite=True)
