"""Image encoders: (B, C, H, W) -> (B, out_dim)."""

from __future__ import annotations

import torch
from torch import nn

from xmodal.registry import MODELS


@MODELS.register_module()
class LeNet5(nn.Module):
    """LeNet-5 (the AV-MNIST image encoder): two conv+pool stages, then 120 -> ``out_dim`` units.

    ``width`` multiplies the channels and the hidden units (6·w, 16·w, 120·w); 1 is the original.
    """

    catalogue_input = "(B, in_channels, input_size, input_size), input_size >= 12"

    def __init__(self, in_channels: int = 1, input_size: int = 28, out_dim: int = 84, width: int = 1) -> None:
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"LeNet5: width must be a positive integer, got {width!r}")
        self.out_dim = out_dim
        self.conv1 = nn.Conv2d(in_channels, 6 * width, 5, padding=2)
        self.conv2 = nn.Conv2d(6 * width, 16 * width, 5)
        self.pool = nn.MaxPool2d(2)
        side = ((input_size // 2) - 4) // 2
        if side < 1:
            raise ValueError(f"LeNet5: input_size={input_size} is too small; expected at least 12")
        self.fc1 = nn.Linear(16 * width * side * side, 120 * width)
        self.fc2 = nn.Linear(120 * width, out_dim)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = self.act(self.fc1(x.flatten(1)))
        return self.act(self.fc2(x))


@MODELS.register_module()
class TimmImageEncoder(nn.Module):
    """Any timm backbone as an encoder (classifier removed, pooled features out).

    Weights: ``pretrained=False`` (random) or ``checkpoint`` = a local file; nothing is downloaded.
    """

    catalogue_input = "(B, in_channels, H, W)"

    def __init__(self, model_name: str = "resnet18", in_channels: int = 3, checkpoint: str | None = None,
                 **kwargs) -> None:
        super().__init__()
        import timm

        self.backbone = timm.create_model(
            model_name, pretrained=bool(checkpoint), num_classes=0, in_chans=in_channels,
            pretrained_cfg_overlay=dict(file=checkpoint) if checkpoint else None, **kwargs,
        )
        self.out_dim = self.backbone.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)
