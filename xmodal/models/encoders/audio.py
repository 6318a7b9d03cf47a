"""Audio encoders on spectrograms: (B, 1, n_mels, frames) -> (B, out_dim).

Waveforms become spectrograms in a transform (``xmodal.data.transforms.LogMelSpectrogram``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xmodal.registry import MODELS


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, width), width)
    if kind == "batch":
        return nn.BatchNorm2d(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"SpectrogramCNN: norm={kind!r}; expected 'group', 'batch' or 'none'")


@MODELS.register_module()
class SpectrogramCNN(nn.Module):
    """Conv-norm-ReLU-pool blocks (three by default, as AV-MNIST's audio net), global pooling, linear.

    ``norm``: "batch" (default), "group" (identical in train and eval mode) or "none".
    """

    catalogue_input = "(B, in_channels, H, W), e.g. a log-mel spectrogram"

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128), out_dim: int = 128,
                 dropout: float = 0.0, norm: str = "batch") -> None:
        super().__init__()
        self.out_dim = out_dim
        blocks, prev = [], in_channels
        for width in channels:
            blocks += [nn.Conv2d(prev, width, 3, padding=1, bias=norm == "none"), _norm(norm, width), nn.ReLU(),
                       nn.MaxPool2d(2)]
            prev = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(prev, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return torch.relu(self.fc(self.dropout(x)))
