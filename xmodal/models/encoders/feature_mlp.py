"""Encoder for precomputed feature vectors: (B, in_dim) -> (B, hidden_dims[-1]).

The single-modality MLPs of MST-Distill's CrisisMMD-V2 recipe (MLP-Vb on 2,048-d ResNet-50 image
features, MLP-Tb on 768-d BERTweet text features) and the branches of its fusion teacher MLP-I are
this module followed by a classification head. The layers are named ``fc1``, ``fc2``, ... as in the
official code, so MST-Distill's mask layers keep their names (``encoders.image.fc1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xmodal.registry import MODELS


@MODELS.register_module()
class FeatureMLP(nn.Module):
    """``fc1 -> ReLU -> fc2 -> ReLU -> ...``, one Linear per entry of ``hidden_dims``.

    Args:
        in_dim: width of the input feature (2048 for ResNet-50, 768 for BERTweet).
        hidden_dims: output width of each layer; the last one is ``out_dim``. Empty: identity.
        dropout: before each layer (0 in the official models).
    """

    catalogue_input = "(B, in_dim)"

    def __init__(self, in_dim: int, hidden_dims: Sequence[int] = (1024, 512), dropout: float = 0.0) -> None:
        super().__init__()
        if in_dim < 1 or any(d < 1 for d in hidden_dims):
            raise ValueError(f"FeatureMLP: in_dim={in_dim}, hidden_dims={tuple(hidden_dims)}; expected positive widths")
        self.in_dim = in_dim
        self.num_layers = len(hidden_dims)
        self.dropout = nn.Dropout(dropout)
        prev = in_dim
        for i, width in enumerate(hidden_dims, start=1):
            self.add_module(f"fc{i}", nn.Linear(prev, width))  # fc1, fc2: the official module names
            prev = width
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"FeatureMLP: input of shape {list(x.shape)}; expected (batch, {self.in_dim})")
        if self.num_layers:
            x = x.to(self.fc1.weight.dtype)  # features may be stored in half precision
        for i in range(1, self.num_layers + 1):
            x = torch.relu(getattr(self, f"fc{i}")(self.dropout(x)))
        return x
