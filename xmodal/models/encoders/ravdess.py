"""Encoders for RAVDESS face clips and MFCCs (MST-Distill's VisualBranch / AudioBranch, models/SeqNets.py).

Inputs are the layouts ``data_prep/ravdess.py`` writes:

* video (B, 15, 3, 224, 224): 15 face crops (frames, channels, H, W). The official visual branch is a
  3D CNN over (channels, frames, H, W): three Conv3d 3×3×3 (3->6->12->24, BatchNorm, ReLU, MaxPool3d 2
  after each) turn 15×224×224 into 1×28×28, i.e. 24·28·28 = 18,816 values;
* audio (B, 15, 156): 15 MFCC coefficients × 156 frames. The coefficients are the Conv1d input
  channels; three Conv1d k=3 (15->32->128->256, BatchNorm, ReLU, MaxPool1d 3 after each) turn 156
  frames into 5, i.e. 256·5 = 1,280 values.

The student nets (VisualBranchNet, AudioBranchNet) follow the branch with ``fc1`` (320) and ``fc2``
(160), both ReLU, then the classifier ``fc3``. Here fc1/fc2 belong to the encoder (``hidden_dims``)
and keep their official names, so MST-Distill's mask layers are ``encoders.video.fc1`` /
``encoders.video.fc2`` (and ``encoders.audio.*``). The fusion teacher DSCNN-I uses the bare branches
(``hidden_dims=()``) and puts fc1 (20,096->320) and fc2 after the concatenation (``MLPFusion``, audio
first as in the official forward).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xmodal.models.encoders.branch import Conv1dBranch, add_mlp, check_input, run_mlp
from xmodal.registry import MODELS


@MODELS.register_module()
class RAVDESSVisualEncoder(nn.Module):
    """(B, T, C, H, W) face clips -> (B, out_dim); official T, C, H, W = 15, 3, 224, 224.

    Args:
        frames: T. in_channels: C. size: (H, W). Together they fix the flattened branch width.
        channels: output channels of the three Conv3d layers.
        hidden_dims: widths of fc1, fc2 after the branch; ``()`` for the bare branch (fusion teacher).
    """

    def __init__(self, frames: int = 15, in_channels: int = 3, size: Sequence[int] = (224, 224),
                 channels: Sequence[int] = (6, 12, 24), hidden_dims: Sequence[int] = (320, 160)) -> None:
        super().__init__()
        if len(channels) != 3:
            raise ValueError(f"RAVDESSVisualEncoder: channels={tuple(channels)}; expected three widths")
        self.input_shape = (frames, in_channels, *size)
        c1, c2, c3 = channels
        self.conv1, self.bn1 = nn.Conv3d(in_channels, c1, 3, padding=1), nn.BatchNorm3d(c1)
        self.conv2, self.bn2 = nn.Conv3d(c1, c2, 3, padding=1), nn.BatchNorm3d(c2)
        self.conv3, self.bn3 = nn.Conv3d(c2, c3, 3, padding=1), nn.BatchNorm3d(c3)
        self.pool = nn.MaxPool3d(2)
        # three 2× poolings (floor): 15×224×224 -> 7×112×112 -> 3×56×56 -> 1×28×28
        reduced = [s // 2 // 2 // 2 for s in (frames, *size)]
        if min(reduced) < 1:
            raise ValueError(f"RAVDESSVisualEncoder: frames×size {[frames, *size]} is too small for three 2× "
                             "poolings; expected every size >= 8")
        self.branch_dim = c3 * reduced[0] * reduced[1] * reduced[2]
        self.num_layers = len(hidden_dims)
        self.out_dim = add_mlp(self, self.branch_dim, hidden_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("RAVDESSVisualEncoder", x, self.input_shape)
        # stored frames-first; Conv3d wants (B, C, T, H, W), the permutation the official loader applies
        x = x.permute(0, 2, 1, 3, 4).to(self.conv1.weight.dtype)
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = self.pool(torch.relu(self.bn3(self.conv3(x)))).flatten(1)
        return run_mlp(self, x, self.num_layers)


@MODELS.register_module()
class RAVDESSAudioEncoder(Conv1dBranch):
    """(B, n_mfcc, frames) MFCCs -> (B, out_dim); official 15 × 156.

    Args:
        n_mfcc: coefficients, the Conv1d input channels. frames: MFCC frames, the convolved axis.
        channels: output channels of the three Conv1d layers.
        hidden_dims: widths of fc1, fc2 after the branch; ``()`` for the bare branch (fusion teacher).
    """

    def __init__(self, n_mfcc: int = 15, frames: int = 156, channels: Sequence[int] = (32, 128, 256),
                 hidden_dims: Sequence[int] = (320, 160)) -> None:
        # the MFCC coefficients are the channels, convolved along the frames (156 -> 52 -> 17 -> 5)
        super().__init__("RAVDESSAudioEncoder", n_mfcc, frames, channels, hidden_dims)
