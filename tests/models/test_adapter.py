"""with_linear_head: a torchvision model gets the toolkit's contract without being changed."""

import pytest
import torch
import torchvision
from torch import nn

from mixcollapse.models.adapter import check_contract, with_linear_head


def test_a_torchvision_resnet_split_at_its_fc():
    model = torchvision.models.resnet18(num_classes=7).eval()
    with pytest.raises(ValueError, match="with_linear_head"):
        check_contract(model)
    wrapped = with_linear_head(model, "fc").eval()
    check_contract(wrapped)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert wrapped.features(x).shape == (2, 512)
        torch.testing.assert_close(wrapped(x), model(x))
        torch.testing.assert_close(wrapped.classifier(wrapped.features(x)), model(x))
    assert isinstance(model.fc, nn.Linear)  # the user's model is left as it was


def test_a_head_that_is_not_linear_is_named():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU())
    with pytest.raises(ValueError, match="model.2 is a ReLU, not the final nn.Linear"):
        with_linear_head(model, "2")


def test_a_missing_head_names_the_keyword_and_the_model_s_last_linear():
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=8, num_classes=5
    )
    with pytest.raises(ValueError, match=r"no module 'fc' \(with_linear_head's head=\).*pass head='heads.head'"):
        with_linear_head(model)  # the default head="fc" is a ResNet's
    assert isinstance(with_linear_head(model, head="heads.head").classifier, nn.Linear)
