"""NC1-NC4 of a network in two streaming passes, against the dense reference."""

import pytest
import torch
from torch import nn

from mixcollapse.analysis.neural_collapse import measure_neural_collapse
from reference import nc_metrics_dense


def test_neural_collapse_passes_match_the_dense_computation_on_random_data():
    d, n = 12, 301
    gen = torch.Generator().manual_seed(3)
    H = torch.randn(n, d, generator=gen, dtype=torch.float64) * 2 + 0.5
    y = torch.randint(0, 6, (n,), generator=gen)
    H[y == 2] += 3.0  # unequal class geometry
    model = nn.Module()
    model.features = nn.Identity()
    model.classifier = nn.Linear(d, 6).double()
    nc = measure_neural_collapse(model, torch.utils.data.TensorDataset(H, y), 6, batch_size=37)
    with torch.no_grad():
        dense = nc_metrics_dense(H, y, model.classifier(H), model.classifier.weight)
    for key, value in dense.items():
        # float32 on the scratch round trip: features are written as float32 between the passes
        assert nc.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    means = torch.stack([H[y == c].mean(0) for c in range(6)])
    torch.testing.assert_close(nc.means, means)
