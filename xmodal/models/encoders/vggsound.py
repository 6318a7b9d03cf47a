"""Encoders for VGGSound-50k's precomputed segment features (MST-Distill's VGGSound branch nets).

Each clip has 10 one-second segments. Visual: VGG-19 pool5 maps, (10, 7, 7, 512) per clip (time, H,
W, channels). Audio: VGGish embeddings, (10, 128) per clip. The official branches (models/CPSP.py):

* visual: the clip becomes a 512-channel volume 10×7×7; three Conv3d 3×3×3 (512->256->128->64, each
  BatchNorm + ReLU, the first two followed by MaxPool3d 2) leave 64×2×1×1 = 128 values;
* audio: the 10 segments are the channels of a Conv1d over the 128 embedding dims; three Conv1d k=3
  (10->16->32->64, BatchNorm, ReLU, MaxPool1d 3) leave 64×4 = 256 values.

The student nets (VisualBranchNet-VGGS, AudioBranchNet-VGGS) follow the branch with ``fc1`` (320) and
``fc2`` (160), both ReLU, then the classifier; those two layers are part of the encoder here
(``hidden_dims``), named as in the official code so MST-Distill's mask layers are
``encoders.visual.fc1`` / ``encoders.visual.fc2``. The fusion teacher (DSCNN-VGGS-I) uses the bare
branches (``hidden_dims=()``) and puts fc1/fc2 after the concatenation (``MLPFusion``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xmodal.models.encoders.branch import Conv1dBranch, add_mlp, run_mlp
from xmodal.registry import MODELS


@MODELS.register_module()
class VGGSoundVisualEncoder(nn.Module):
    """(B, T, H, W, C) segment feature maps -> (B, out_dim); official T, H, W, C = 10, 7, 7, 512.

    Args:
        in_channels: C, the feature-map channels (512 for VGG-19 pool5).
        segments: T. grid: (H, W). Together they fix the flattened width after the convolutions.
        channels: output channels of the three Conv3d layers.
        hidden_dims: widths of fc1, fc2 after the branch; ``()`` for the bare branch (fusion teacher).
    """

    def __init__(self, in_channels: int = 512, segments: int = 10, grid: Sequence[int] = (7, 7),
                 channels: Sequence[int] = (256, 128, 64), hidden_dims: Sequence[int] = (320, 160)) -> None:
        super().__init__()
        if len(channels) != 3:
            raise ValueError(f"VGGSoundVisualEncoder: channels={tuple(channels)}; expected three widths")
        self.input_shape = (segments, *grid, in_channels)
        c1, c2, c3 = channels
        self.conv1, self.bn1 = nn.Conv3d(in_channels, c1, 3, padding=1), nn.BatchNorm3d(c1)
        self.conv2, self.bn2 = nn.Conv3d(c1, c2, 3, padding=1), nn.BatchNorm3d(c2)
        self.conv3, self.bn3 = nn.Conv3d(c2, c3, 3, padding=1), nn.BatchNorm3d(c3)
        self.pool = nn.MaxPool3d(2)
        # two 2× poolings (floor): 10×7×7 -> 5×3×3 -> 2×1×1
        reduced = [size // 2 // 2 for size in (segments, *grid)]
        if min(reduced) < 1:
            raise ValueError(f"VGGSoundVisualEncoder: segments×grid {[segments, *grid]} is too small for two "
                             "2× poolings; expected every size >= 4")
        self.branch_dim = c3 * reduced[0] * reduced[1] * reduced[2]
        self.num_layers = len(hidden_dims)
        self.out_dim = add_mlp(self, self.branch_dim, hidden_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"VGGSoundVisualEncoder: input of shape {list(x.shape)}; expected "
                             f"(batch, {', '.join(map(str, self.input_shape))})")
        # channels-last segment maps -> Conv3d layout (B, C, T, H, W), as the official preprocessing does
        x = x.permute(0, 4, 1, 2, 3).to(self.conv1.weight.dtype)
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = torch.relu(self.bn3(self.conv3(x))).flatten(1)
        return run_mlp(self, x, self.num_layers)


@MODELS.register_module()
class VGGSoundAudioEncoder(Conv1dBranch):
    """(B, T, D) segment embeddings -> (B, out_dim); official T, D = 10, 128.

    The segments are Conv1d input channels (the official AudioBranch), so convolution and pooling
    run along the embedding dimension.

    Args:
        segments: T. feat_dim: D.
        channels: output channels of the three Conv1d layers.
        hidden_dims: widths of fc1, fc2 after the branch; ``()`` for the bare branch (fusion teacher).
    """

    def __init__(self, segments: int = 10, feat_dim: int = 128, channels: Sequence[int] = (16, 32, 64),
                 hidden_dims: Sequence[int] = (320, 160)) -> None:
        # the segments are the channels, convolved along the embedding (128 -> 42 -> 14 -> 4)
        super().__init__("VGGSoundAudioEncoder", segments, feat_dim, channels, hidden_dims)
