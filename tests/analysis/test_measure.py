"""measure_model end to end on a hand-built model, one network state for all measurements, reference values."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_calibration_error

from mixcollapse.analysis.extract import recalibrate_batchnorm
from mixcollapse.analysis.measure import ANALYSIS_FILE, HEADLINE, Report, Training, measure_model
from mixcollapse.config import AnalysisConfig
from mixcollapse.metrics.projection import project_features
from mixcollapse.models.adapter import with_linear_head
from reference import nc_metrics_dense

QUIET = Report(draw=False, progress=False)

pytestmark = pytest.mark.usefixtures("single_thread")

C = 5
SMALL = dict(pairs_per_class_pair=20, test_pairs=150, recalibrate_batches=3, batch_size=64)


class TinyBN(nn.Module):
    """A user's own model honouring the contract: features(x) and a final linear classifier."""

    def __init__(self, num_classes=C, bias=True):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.classifier = nn.Linear(8, num_classes, bias=bias)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.features(x))


def _dataset(n, seed):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    x = torch.randn(n, 1, 4, 4, generator=gen) + 1.5 * y.view(-1, 1, 1, 1).float()
    return torch.utils.data.TensorDataset(x, y)


@pytest.fixture
def data():
    return _dataset(150, 0), _dataset(50, 1)


def _rows(n=3):
    return [
        {
            "epoch": e,
            "classifier_norm_cv": 0.3 / e,
            "classifier_cos_std": 0.2 / e,
            "classifier_cos_mean": -0.1,
            "classifier_etf_cos": -0.25,
            "classifier_etf_distance": 0.5 / e,
        }
        for e in range(1, n + 1)
    ]


def _mixed_batches(seed=0, n=3):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(32, 1, 4, 4, generator=gen) * 2 + k for k in range(n)]


def _ece_appendix_c(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Appendix C's ECE written out with numpy (bins [k/M, (k+1)/M), confidence 1.0 in the last)."""
    conf, pred = probs.max(1), probs.argmax(1)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for k in range(n_bins):
        m = bins == k
        if m.any():
            ece += m.sum() / len(y) * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return ece


def test_measure_model_writes_every_section_and_figure(tmp_path, data):
    train, test = data
    out = tmp_path / "analysis"
    result = measure_model(
        TinyBN(),
        train,
        test,
        out_dir=out,
        classes=[0, 2, 4],
        settings=AnalysisConfig(**SMALL),
        training=Training(mix_batch_size=32, metrics_rows=_rows(), checkpoint_epoch=3),
        report=Report([f"c{k}" for k in range(C)], "tiny", progress=False),
        device="cpu",
    )
    summary = json.loads((out / ANALYSIS_FILE).read_text())
    assert summary == result.summary
    for section in ("configuration", "neural_collapse", "calibration", "test_pairs", "classifier", "bn"):
        assert isinstance(summary[section], dict), section
    for keys in HEADLINE.values():
        for key in keys:
            assert key in summary, key
    finite = (
        "pair_prob_mae",
        "pair_mass",
        "other_logit_spread",
        "same_cos_mean",
        "channel_position_mae",
        "nc1",
        "nc3",
        "nc4_agreement",
        "test_accuracy",
        "ece",
        "mce",
        "test_pair_error",
        "classifier_etf_distance",
        "ufm_distance",
    )
    for key in finite:
        assert isinstance(summary[key], float) and np.isfinite(summary[key]), key
    conf = summary["configuration"]
    assert conf["diff_count"] + conf["same_count"] == summary["num_pairs"] == 6 * 20
    assert len(conf["pair_prob_by_lambda"]) == len(conf["lambda_bin_centers"]) == 20
    assert conf["ufm"]["bias"].startswith("ignored") and conf["ufm"]["weight_decay"] == 1e-4
    assert 0 < conf["classifier_span_energy"] <= 1 and 0 <= conf["ufm_distance_in_span"] <= conf["ufm_distance"]
    assert summary["neural_collapse"]["num_samples"] == 150
    assert summary["calibration"]["n_bins"] == 15 and summary["calibration"]["num_samples"] == 50
    pairs = summary["test_pairs"]
    assert pairs["num_pairs"] >= 150 and pairs["different_class"]["counts"] and pairs["same_class"]["counts"]
    assert summary["classifier"]["history"]["epoch"] == [1, 2, 3]
    assert summary["bn"]["pairs"] == "recalibrate" and summary["bn_mode"] == "recalibrate"
    assert summary["bn"]["unmixed"].startswith("recalibrate")
    assert result.xy.shape == (120, 2) and summary["class_names"] == ["c0", "c2", "c4"]
    # The saved projection is Appendix B.2's of the saved features, centred by their mean.
    features, W = np.load(out / "features" / "features.npy"), np.load(out / "features" / "classifier_weight.npy")
    np.testing.assert_allclose(
        np.load(out / "features" / "projection.npy"),
        project_features(features.astype(np.float64), W[[0, 2, 4]]),
        atol=1e-9,
    )

    files = summary["figure_files"]
    for name in (
        "configuration",
        "configuration_measures",
        "reliability",
        "confidence_by_lambda",
        "classifier_geometry",
    ):
        assert [p.rsplit(".", 1)[1] for p in files[name]] == ["png"], name
    (html,) = files["configuration_html"]
    text = open(html).read()
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?https?:", text, flags=re.I)
    assert all((out / "figures").joinpath(p.split("/")[-1]).exists() for p in summary["figures"])

    with pytest.raises(FileExistsError, match="pass overwrite=True to replace it or choose another out_dir"):
        measure_model(TinyBN(), train, test, out_dir=out, classes=[0, 2, 4], settings=AnalysisConfig(**SMALL))


def test_one_network_state_for_every_measurement(tmp_path, data):
    """recalibrate: pairs, NC and the test set all see the same recalibrated copy; ECE = torchmetrics' = Appendix C."""
    train, test = data
    model = TinyBN()
    result = measure_model(
        model,
        train,
        test,
        out_dir=tmp_path / "a",
        classes=[0, 1, 2],
        settings=AnalysisConfig(**SMALL),
        training=Training(mix_batches=iter(_mixed_batches())),
        report=QUIET,
        device="cpu",
    )
    ref = recalibrate_batchnorm(model, iter(_mixed_batches()), 3, "cpu")
    x_test, y_test = test.tensors
    with torch.no_grad():
        probs = torch.softmax(ref(x_test).double(), dim=1)
        H_train = ref.features(train.tensors[0]).double()
        logits_train = ref(train.tensors[0]).double()
    cal = result.summary["calibration"]
    reference = float(multiclass_calibration_error(probs, y_test, C, n_bins=15, norm="l1"))
    assert cal["ece"] == pytest.approx(reference, abs=1e-6)
    assert cal["ece"] == pytest.approx(_ece_appendix_c(probs.numpy(), y_test.numpy()), abs=1e-6)
    assert cal["mce"] == pytest.approx(
        float(multiclass_calibration_error(probs, y_test, C, n_bins=15, norm="max")), abs=1e-6
    )
    assert cal["accuracy"] == pytest.approx(float((probs.argmax(1) == y_test).double().mean()))
    dense = nc_metrics_dense(H_train, train.tensors[1], logits_train, ref.classifier.weight.detach())
    for key in ("nc1", "nc2_norm_cv", "nc3", "nc4_agreement"):
        assert result.summary["neural_collapse"][key] == pytest.approx(dense[key], rel=1e-5, abs=1e-7), key
    # The pair features come from the same copy: the first pair's feature, recomputed.
    p = result.features.pairs
    lam = float(p.lam[0])
    x0 = lam * train[int(p.index_a[0])][0] + (1 - lam) * train[int(p.index_b[0])][0]
    with torch.no_grad():
        h0 = ref.features(x0[None])[0].numpy()
    np.testing.assert_allclose(result.features.features[0], h0, rtol=1e-5, atol=1e-6)
    assert torch.equal(model.body[2].running_mean, torch.zeros(8))  # the caller's model is untouched


def test_train_mode_measures_unmixed_data_with_stored_statistics(tmp_path, data):
    train, test = data
    model = TinyBN()
    with torch.no_grad():  # give the stored statistics something to say
        model.body[2].running_mean.fill_(0.3)
        model.body[2].running_var.fill_(2.0)
    result = measure_model(
        model,
        train,
        test,
        out_dir=tmp_path / "t",
        classes=[0, 1, 2],
        settings=AnalysisConfig(bn_mode="train", **SMALL),
        training=Training(mix_batches=iter(_mixed_batches(n=50))),
        report=QUIET,
        device="cpu",
    )
    bn = result.summary["bn"]
    assert bn["pairs"] == "train" and bn["unmixed"].startswith("eval")
    with torch.no_grad():
        probs = torch.softmax(model.eval()(test.tensors[0]).double(), dim=1)
    reference = float(multiclass_calibration_error(probs, test.tensors[1], C, n_bins=15, norm="l1"))
    assert result.summary["calibration"]["ece"] == pytest.approx(reference, abs=1e-6)


def test_any_model_through_with_linear_head(tmp_path, data):
    """A model without features(): split at its final linear layer, no batch norm, no bias."""
    train, test = data

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.Tanh())
            self.fc = nn.Linear(6, C, bias=False)

        def forward(self, x):
            return self.fc(self.trunk(x))

    model = Plain()
    with pytest.raises(ValueError, match="with_linear_head"):
        measure_model(model, train, None, out_dir=tmp_path / "x", classes=[0, 1, 2])
    wrapped = with_linear_head(model, "fc")
    x = train.tensors[0][:4]
    torch.testing.assert_close(wrapped(x), model(x))
    result = measure_model(
        wrapped,
        train,
        None,
        out_dir=tmp_path / "p",
        classes=[1, 2, 3],
        settings=AnalysisConfig(**SMALL),
        report=QUIET,
        device="cpu",
    )
    s = result.summary
    assert s["bn"]["pairs"].startswith("none") and s["calibration"] is None and s["test_pairs"] is None
    assert s["ece"] is None and np.isfinite(s["nc1"]) and s["configuration"]["ufm"]["bias"] == "none"


@pytest.mark.slow
def test_analysis_benchmark_runs_end_to_end_on_a_small_run():
    # the benchmark measures, it is not a test of speed or memory: this only keeps the script working
    bench = Path(__file__).resolve().parents[2] / "bench" / "bench_analysis.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--epochs", "1", "--pairs", "600", "--repeat", "1", "--sizes", "1000"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "overhead within each measured run" in proc.stdout and "median anon" in proc.stdout


def test_class_names_come_from_the_dataset_by_default(tmp_path, data):
    train, test = data

    class Named(torch.utils.data.TensorDataset):
        classes = ["zero", "one", "two", "three", "four"]

    named = Named(*train.tensors)
    result = measure_model(
        TinyBN(),
        named,
        None,
        out_dir=tmp_path / "a",
        classes=[0, 3, 4],
        settings=AnalysisConfig(**SMALL),
        report=QUIET,
        device="cpu",
    )
    assert result.summary["class_names"] == ["zero", "three", "four"]
