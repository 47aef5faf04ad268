"""The adapter for users' models: any network that ends in a linear layer gets the toolkit's contract.

The analysis needs ``features(x) -> (B, d)`` (the last-layer features h) and ``classifier``, the
final ``nn.Linear`` (W and b of the paper's section 2); ``with_linear_head`` splits them off a
torchvision or timm model without changing it.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn


class _LinearHead(nn.Module):
    """A model split at its final linear layer: features(x) is the model with that layer as identity."""

    def __init__(self, body: nn.Module, classifier: nn.Linear) -> None:
        super().__init__()
        self.body, self.classifier = body, classifier

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.body(x))


def with_linear_head(model: nn.Module, head: str = "fc") -> nn.Module:
    """Give any model the toolkit's contract, ``features(x)`` and ``classifier``, by splitting off its head.

    ``head`` names the final ``nn.Linear`` as a dotted attribute path (torchvision ResNet: ``fc``;
    timm: ``head`` or ``head.fc``; torchvision ViT: ``heads.head``). Works when the head's input
    is the model's last-layer feature, i.e. the model ends with that layer. The model itself is
    not changed: the returned module holds a copy whose head is an identity, and the head.
    """
    *parents, leaf = head.split(".")
    owner = model
    try:
        for name in parents:
            owner = getattr(owner, name)
        linear = getattr(owner, leaf)
    except AttributeError:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        last = (
            f"; its last nn.Linear is '{linears[-1]}': pass head='{linears[-1]}'"
            if linears
            else "; it has no nn.Linear, so it needs its own features(x) and classifier"
        )
        raise ValueError(f"{type(model).__name__} has no module '{head}' (with_linear_head's head=){last}") from None
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"model.{head} is a {type(linear).__name__}, not the final nn.Linear; pass head=...")
    body = copy.deepcopy(model)
    body_owner = body
    for name in parents:
        body_owner = getattr(body_owner, name)
    setattr(body_owner, leaf, nn.Identity())
    return _LinearHead(body, copy.deepcopy(linear))


def check_contract(model: nn.Module) -> None:
    """Raise ValueError unless ``model`` has ``features(x) -> (B, d)`` and a final ``nn.Linear`` ``classifier``."""
    if not callable(getattr(model, "features", None)) or not isinstance(getattr(model, "classifier", None), nn.Linear):
        raise ValueError(
            "the model needs features(x) -> (B, d) and a final nn.Linear `classifier`; "
            "wrap it with mixcollapse.models.adapter.with_linear_head(model, head='fc')"
        )
