"""Vision Transformer from timm with CLS-token pooling (the paper: ViT-B with patch size 4 on 32x32).

timm's encoder is used as is (no pretrained weights, no dropout); the head is our own
``classifier`` so that it may have no bias and may be fixed to a simplex ETF.
"""

from __future__ import annotations

import torch
from torch import nn


class ViT(nn.Module):
    """timm VisionTransformer encoder + linear classifier; features are the final-normed CLS token."""

    def __init__(
        self,
        num_classes: int,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        bias: bool = True,
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer  # timm is imported only for a ViT

        self.encoder = VisionTransformer(
            img_size=image_size,
            patch_size=patch_size,
            in_chans=in_channels,
            num_classes=0,  # timm's head becomes Identity; ours is `classifier`
            global_pool="token",
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            drop_rate=0.0,
            pos_drop_rate=0.0,
            proj_drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=0.0,
        )
        self.feature_dim = embed_dim
        self.classifier = nn.Linear(embed_dim, num_classes, bias=bias)
        # timm's default initialisation of its own head.
        nn.init.trunc_normal_(self.classifier.weight, std=0.02)
        if bias:
            nn.init.zeros_(self.classifier.bias)

    def intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """CLS token (B, d) at the embedding and after each block, all through the final norm.

        depth + 1 entries: entry 0 is the CLS token plus its position embedding before block 0
        (where a trajectory starts), entry i the CLS token after block i. The final norm is
        applied to every entry so that all live in the space of the last-layer features that the
        classifier reads (Figure 3 projects them with the final classifier); the last equals
        features(x).
        """
        enc = self.encoder
        # The same steps as timm's forward_features, with the blocks run one at a time.
        x = enc.norm_pre(enc.patch_drop(enc._pos_embed(enc.patch_embed(x))))  # (B, 1 + L, d)
        out = [enc.norm(x[:, 0])]
        for block in enc.blocks:
            x = block(x)
            out.append(enc.norm(x[:, 0]))
        return out

    def mixing_points(self) -> list[nn.Module | None]:
        """Where manifold mixup may blend hidden states: the input (None), then the tokens after each block."""
        return [None, *self.encoder.blocks]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last-layer activations h (B, d): the normed CLS token, the input of the classifier."""
        return self.encoder.forward_head(self.encoder.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, C)."""
        return self.classifier(self.features(x))
