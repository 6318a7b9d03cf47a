"""MST-Distill's masking modules: a per-channel soft mask on one teacher feature.

A feature of width D is embedded into a sequence of D tokens of width h (one Linear D → h·D),
mixed by multi-head self-attention, projected to one value per token and squashed by a sigmoid;
the result multiplies the feature channel-wise. h = D // (factor·heads) · heads (official
factor 2, 3 heads). 2-D features (B, C, H, W) are first reduced to (B, C) by a depthwise stride-2
convolution, a pointwise convolution, BatchNorm, ReLU and global average pooling. A (B, C, 1, 1) map
is a vector: the official code gives it the 1-D MaskNet, so ``mask_shapes`` ``[C, 1, 1]`` builds a
``MaskNet1d``, and a ``MaskNet2d`` refuses such a map instead of masking it differently.
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.registry import MODELS


def masknet_hidden_dim(feat_dim: int, factor: int = 2, num_heads: int = 3) -> int:
    """Token width h: a multiple of ``num_heads``, at least ``num_heads`` (narrow features)."""
    return max(num_heads, feat_dim // (factor * num_heads) * num_heads)


def masknet_1d_num_params(feat_dim: int, factor: int = 2, num_heads: int = 3) -> int:
    """Parameters of :class:`MaskNet1d`: embed h·D·(D+1), attention 4h²+4h, output h+1."""
    d, h = feat_dim, masknet_hidden_dim(feat_dim, factor, num_heads)
    return h * d * (d + 1) + 4 * h * h + 4 * h + h + 1


def masknet_2d_num_params(feat_dim: int, factor: int = 2, num_heads: int = 3) -> int:
    """Parameters of :class:`MaskNet2d`: spatial reduction 9C + C² + 2C (BN affine), then MaskNet1d."""
    c = feat_dim
    return 9 * c + c * c + 2 * c + masknet_1d_num_params(c, factor, num_heads)


@MODELS.register_module()
class MaskNet1d(nn.Module):
    """(B, D) feature → (B, D) mask in (0, 1)."""

    def __init__(self, feat_dim: int, factor: int = 2, num_heads: int = 3) -> None:
        super().__init__()
        self.feat_dim = feat_dim
        self.hidden_dim = masknet_hidden_dim(feat_dim, factor, num_heads)
        self.embed = nn.Linear(feat_dim, self.hidden_dim * feat_dim)
        self.attention = nn.MultiheadAttention(self.hidden_dim, num_heads, batch_first=True)
        self.out = nn.Linear(self.hidden_dim, 1)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        feature = feature.flatten(1)  # (B, C, 1, 1) features count as vectors
        if feature.shape[1] != self.feat_dim:
            raise ValueError(f"MaskNet1d built for width {self.feat_dim}, got a feature of shape "
                             f"{tuple(feature.shape)}")
        tokens = self.embed(feature).view(feature.shape[0], self.feat_dim, self.hidden_dim)
        mixed, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return torch.sigmoid(self.out(mixed).squeeze(-1))


class SpatialReduction(nn.Sequential):
    """(B, C, H, W) → (B, C): depthwise 3×3 stride 2, pointwise 1×1, BN, ReLU, global average pool."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
        )


@MODELS.register_module()
class MaskNet2d(nn.Module):
    """(B, C, H, W) feature → (B, C) channel mask."""

    def __init__(self, feat_dim: int, factor: int = 2, num_heads: int = 3) -> None:
        super().__init__()
        self.reduce = SpatialReduction(feat_dim)
        self.mask = MaskNet1d(feat_dim, factor, num_heads)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        if feature.dim() != 4:
            raise ValueError(f"MaskNet2d expects a (B, C, H, W) feature, got shape {tuple(feature.shape)}")
        if feature.shape[-2:] == (1, 1):
            c = feature.shape[1]
            raise ValueError(f"MaskNet2d got a {c}×1×1 map, which the official code masks as a vector (MaskNet_1d): "
                             f"give this layer mask_shapes={{teacher: {{path: [{c}, 1, 1]}}}} to build a MaskNet1d")
        return self.mask(self.reduce(feature))


def apply_mask(feature: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Multiply a (B, C) mask into a (B, C, ...) feature channel-wise."""
    return feature * mask.view(*mask.shape, *([1] * (feature.dim() - mask.dim())))


def feature_spec(module: nn.Module, owner: str) -> tuple[int, bool]:
    """(channels, is_2d) of a module's output, read from its definition."""
    if isinstance(module, nn.Linear):
        return module.out_features, False
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return module.out_channels, True
    if isinstance(module, nn.BatchNorm2d):
        return module.num_features, True
    if isinstance(module, nn.BatchNorm1d):
        return module.num_features, False
    if isinstance(module, nn.LayerNorm):
        return int(module.normalized_shape[-1]), False
    raise ValueError(f"{owner}: cannot tell the output width of a {type(module).__name__}; mask a Linear, Conv2d "
                     f"or norm layer, or give mask_shapes={{path: [D] or [C, H, W]}}")


def build_masknet(channels: int, is_2d: bool, factor: int = 2, num_heads: int = 3) -> nn.Module:
    return (MaskNet2d if is_2d else MaskNet1d)(channels, factor, num_heads)
