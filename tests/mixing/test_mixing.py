"""Every mixing method, checked by hand on tiny inputs; CutMix's boxes against timm's; the registry; the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from mixcollapse.config import MIXING_METHODS, MixingConfig, load_config
from mixcollapse.mixing import METHODS, CutMix, HiddenPairs, ManifoldMixup, Mixing, build_mixing
from mixcollapse.mixup import mix_batch


def identity_images(n: int, size: int = 8) -> torch.Tensor:
    """Image i is filled with the value i: a mixed pixel says which image it came from."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, size, size).clone()


def test_every_method_in_the_config_has_a_class_and_back():
    assert set(METHODS) == set(MIXING_METHODS)


def test_mixup_through_the_object_draws_what_mix_batch_draws():
    x, y = torch.randn(8, 1, 4, 4), torch.arange(8) % 3
    a = build_mixing(MixingConfig(alpha=0.7)).mix_inputs(x, y, 3, np.random.default_rng(5))
    b = mix_batch(x, y, 3, 0.7, np.random.default_rng(5))
    assert torch.equal(a.x, b.x) and torch.equal(a.target, b.target) and torch.equal(a.index_b, b.index_b)


def test_no_mixing_is_one_hot_and_draws_nothing():
    for cfg in (MixingConfig(alpha=0.0), MixingConfig(method="none", alpha=1.0)):
        rng = np.random.default_rng(0)
        batch = build_mixing(cfg).mix_inputs(torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 1]), 3, rng)
        assert torch.equal(batch.target, F.one_hot(torch.tensor([0, 1, 2, 1]), 3).float())
        assert rng.random() == np.random.default_rng(0).random()  # the stream is untouched


def test_label_smoothing_by_hand():
    mixing = build_mixing(MixingConfig(method="none", label_smoothing=0.2))
    batch = mixing.mix_inputs(torch.zeros(2, 1, 4, 4), torch.tensor([0, 3]), 4, np.random.default_rng(0))
    expected = torch.tensor([[0.85, 0.05, 0.05, 0.05], [0.05, 0.05, 0.05, 0.85]])
    torch.testing.assert_close(mixing.targets(batch), expected)
    mixed = build_mixing(MixingConfig(alpha=1.0, label_smoothing=0.1))
    batch = mixed.mix_inputs(torch.zeros(4, 1, 4, 4), torch.tensor([0, 1, 2, 3]), 4, np.random.default_rng(1))
    torch.testing.assert_close(mixed.targets(batch), 0.9 * batch.target + 0.025)  # smoothing after mixing


# ---- CutMix ------------------------------------------------------------------------------------


def test_cutmix_pastes_one_box_and_lambda_is_its_exact_area():
    x, y = identity_images(6), torch.tensor([0, 1, 2, 0, 1, 2])
    rng = np.random.default_rng(3)
    for _ in range(20):
        batch = CutMix(MixingConfig(method="cutmix")).mix_inputs(x, y, 3, rng)
        own = (batch.x == x).float().mean(dim=(1, 2, 3))  # share of each image's own pixels
        partner = (batch.x == x[batch.index_b]).float().mean(dim=(1, 2, 3))
        moved = batch.index_b != torch.arange(6)
        torch.testing.assert_close(own[moved], batch.lam[moved])
        torch.testing.assert_close(partner[moved], 1 - batch.lam[moved])
        onehot = F.one_hot(y, 3).float()
        torch.testing.assert_close(
            batch.target, batch.lam[:, None] * onehot + (1 - batch.lam[:, None]) * onehot[batch.index_b]
        )
        diff = (batch.x != x)[moved][:, 0]  # a rectangle: its rows and columns span the changed pixels
        if diff.any():
            rows, cols = diff.any(dim=2), diff.any(dim=1)
            assert torch.equal(diff, rows[:, :, None] & cols[:, None, :])


def test_cutmix_areas_follow_timms_distribution():
    from timm.data import Mixup

    size, n = 28, 3000
    ours = np.array(
        [CutMix(MixingConfig(method="cutmix")).mix_inputs(identity_images(2, size), torch.tensor([0, 1]), 2,
                                                           np.random.default_rng([7, k])).lam[0].item()
         for k in range(n)]
    )  # fmt: skip
    np.random.seed(7)  # timm draws from numpy's global generator
    timm = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, label_smoothing=0.0, num_classes=2, correct_lam=True)
    theirs = np.array([timm(identity_images(2, size), torch.tensor([0, 1]))[1][0, 0].item() for _ in range(n)])
    assert stats.ks_2samp(ours, theirs).pvalue > 0.001
    assert abs(ours.mean() - theirs.mean()) < 0.02 and abs(ours.std() - theirs.std()) < 0.02


def test_cutmix_analysis_pairs_carry_their_exact_area():
    mixing = CutMix(MixingConfig(method="cutmix"))
    lam = mixing.pair_lambdas(np.array([0.0, 0.3, 0.5, 0.99, 1.0]), (1, 8, 8))
    assert lam.tolist() == [0.0, 1 - 36 / 64, 1 - 25 / 64, 1.0, 1.0]  # sides 8, 6 (of 6.7), 5 (of 5.7), 0, 0
    x_a, x_b = identity_images(5), identity_images(5) + 100
    mixed = mixing.pair_images(x_a, x_b, torch.as_tensor(lam, dtype=torch.float32), np.arange(5))
    own = (mixed == x_a).float().mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(own, lam)
    again = mixing.pair_images(x_a, x_b, torch.as_tensor(lam, dtype=torch.float32), np.arange(5))
    assert torch.equal(mixed, again)  # the box of a pair is a function of its index


def test_mixup_analysis_pairs_are_blends():
    x_a, x_b = identity_images(3), identity_images(3) + 10
    lam = torch.tensor([0.0, 0.25, 1.0])
    torch.testing.assert_close(
        Mixing().pair_images(x_a, x_b, lam, np.arange(3))[:, 0, 0, 0], torch.tensor([10.0, 8.5, 2.0])
    )


# ---- manifold mixup ----------------------------------------------------------------------------


class Toy(nn.Module):
    """x -> first(x) -> second -> classifier; mixing points: the input, first's output, second's output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second, self.classifier = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def mixing_points(self):
        return [None, self.first, self.second]

    def features(self, x):
        return self.second(self.first(x))

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_manifold_mixup_blends_the_hidden_state_of_the_drawn_layer(layer):
    model, x, y = Toy(), torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    mixing = ManifoldMixup(MixingConfig(method="manifold", alpha=1.0, layers=[layer]))
    logits, batch = mixing.forward(model, x, y, 2, np.random.default_rng(4))
    lam, b = batch.lam[:, None], batch.index_b

    def blend(h):
        return lam * h + (1 - lam) * h[b]

    stages = [lambda h: h, model.first, model.second]
    h = x
    for k in range(3):
        h = stages[k](h)
        if k == layer:
            h = blend(h)
    torch.testing.assert_close(logits, model.classifier(h))
    onehot = F.one_hot(y, 2).float()
    torch.testing.assert_close(batch.target, lam * onehot + (1 - lam) * onehot[b])
    assert not model.first._forward_hooks and not model.second._forward_hooks  # no hook left behind


def test_manifold_mixup_says_which_layers_a_model_has():
    mixing = ManifoldMixup(MixingConfig(method="manifold", layers=[5]))
    with pytest.raises(ValueError, match="mixing points 0..2"):
        mixing.forward(Toy(), torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), 2, np.random.default_rng(0))


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_analysis_pairs_mixed_at_a_hidden_layer(layer):
    model, x_a, x_b = Toy(), torch.randn(4, 3), torch.randn(4, 3)
    lam = torch.tensor([0.0, 0.3, 0.5, 1.0])
    pairs = HiddenPairs(layer, Mixing())
    h = pairs.pair_features(model, pairs.pair_images(x_a, x_b, lam, np.arange(4)), lam)
    stages = [lambda v: v, model.first, model.second]
    a, b = x_a, x_b
    for k in range(3):
        a, b = stages[k](a), stages[k](b)
        if k == layer:
            a = b = lam[:, None] * a + (1 - lam[:, None]) * b
    torch.testing.assert_close(h, a)
    assert not model.first._forward_hooks and not model.second._forward_hooks


# ---- the config ------------------------------------------------------------------------------


def test_the_old_mixup_section_is_still_read():
    cfg = load_config("digits", ["mixup.alpha=0.4"])
    assert cfg.mixing.alpha == 0.4 and cfg.mixing.method == "mixup"
    from mixcollapse.config import config_from_dict

    assert config_from_dict({"mixup": {"alpha": 0.0, "per_sample": True}}).mixing.per_sample


@pytest.mark.parametrize(
    "override, message",
    [
        ("mixing.method=mixmatch", "mixing.method='mixmatch' is not one of: none, mixup, manifold, cutmix"),
        ("mixing.label_smoothing=1.0", "must lie in \\[0, 1\\)"),
        ("mixing.layers=[]", "must list layer indices"),
    ],
)
def test_bad_mixing_settings_are_one_line(override, message):
    from mixcollapse.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config("digits", [override])
