"""The AV-MNIST networks of MST-Distill's benchmark (``models/LeNet5.py``, ``models/CNNs.py``) as encoders;
the last classifier layer of each official network is the ``ClsHead``'s ``fc``.

* ``LeNet5Encoder``: the official LeNet5 without ``fc2``: 5×5 convs 6 and 16 with 2×2 average pooling,
  a 5×5 ``conv3`` to 120×1×1, ``fc1`` 120 → 84, ReLU after each (the image student, and CNN-I's
  image branch ``LeNet5_woClsHead``). ``xmodal.models.encoders.image.LeNet5`` (digits-av) has the
  same parameter count but max pooling and a linear layer in place of ``conv3``, so its module
  names (``fc1`` 400 → 120, ``fc2`` 120 → 84) differ from the official ones.
* ``ThreeLayerCNNEncoder``: ThreeLayerCNN-A without ``fc1``: three 3×3 conv + ReLU + 2×2 max-pool
  blocks (32, 64, 128 channels) on the 1×112×112 spectrogram, flattened to 128·14·14 = 25,088
  (the audio student; its official ``fc1`` 25,088 → 10 is the head's ``fc``).
* ``FiveLayerCNNEncoder``: FiveLayerCNN_A_woClsHead: five such blocks (32 … 512 channels, no pool
  after the fifth), global average pooling to 512 (CNN-I's audio branch).

CNN-I itself is a ``ModalityClassifier`` with these two branches and
``MLPFusion(hidden_dims=(298,), order=("image", "audio"), activation=False)`` (configs/avmnist/_base_).
Module names follow the official ones, so the official MST-Distill mask layers keep their names:
CNN-I ``concat_identity`` / ``fc1`` → ``fusion.concat`` / ``fusion.fc1``; ThreeLayerCNN-A ``conv2`` /
``conv3`` (the cross-modal teacher of an image student) → ``encoders.audio.conv2`` / ``conv3``;
LeNet5 ``conv3`` / ``fc1`` (that of an audio student) → ``encoders.image.conv3`` / ``fc1``. The names
match, the mask types need one setting: LeNet5's ``conv3`` outputs 120×1×1, which the official code
masks as a vector (``MaskNet_1d``, 885,901 parameters), so give it
``mask_shapes={teacher: {"encoders.image.conv3": [120, 1, 1]}}``; a Conv2d without ``mask_shapes``
gets a ``MaskNet2d`` (901,621 parameters), which stops with that hint at its first 1×1 map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.registry import MODELS


@MODELS.register_module()
class LeNet5Encoder(nn.Module):
    """(B, 1, 28, 28) → (B, 84)."""

    out_dim = 84

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.conv3 = nn.Conv2d(16, 120, 5)
        self.fc1 = nn.Linear(120, 84)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x)).flatten(1)
        if x.shape[1] != 120:
            raise ValueError(f"LeNet5Encoder expects 28×28 inputs (conv3 → 120×1×1), got {x.shape[1]} features")
        return F.relu(self.fc1(x))


class _ConvStack(nn.Module):
    def __init__(self, in_channels: int, channels: Sequence[int], pools: int) -> None:
        super().__init__()
        prev = in_channels
        for i, width in enumerate(channels, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(prev, width, 3, padding=1))
            prev = width
        self.num_convs, self.pools = len(channels), pools

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.num_convs + 1):
            x = F.relu(getattr(self, f"conv{i}")(x))
            if i <= self.pools:
                x = F.max_pool2d(x, 2)
        return x


@MODELS.register_module()
class ThreeLayerCNNEncoder(_ConvStack):
    """(B, 1, 112, 112) → (B, 25088): conv 32/64/128, each followed by ReLU and a 2×2 max-pool."""

    def __init__(self, in_channels: int = 1, input_size: int = 112, channels: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__(in_channels, channels, pools=len(channels))
        self.input_size = input_size
        side = input_size // 2 ** len(channels)
        self.out_dim = channels[-1] * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        if x.shape[1] != self.out_dim:  # caught here rather than as a matrix-size error in the head
            raise ValueError(f"ThreeLayerCNNEncoder built for {self.input_size}×{self.input_size} inputs "
                             f"({self.out_dim} features), got {x.shape[1]} features")
        return x


@MODELS.register_module()
class FiveLayerCNNEncoder(_ConvStack):  # no fixed input size: the global pool absorbs it
    """(B, 1, 112, 112) → (B, 512): conv 32 … 512, max-pool after the first four, global average pool."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128, 256, 512)) -> None:
        super().__init__(in_channels, channels, pools=len(channels) - 1)
        self.out_dim = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))
