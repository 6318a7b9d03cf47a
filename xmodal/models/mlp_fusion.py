"""Fusion by concatenation followed by an MLP: the fusion part of MST-Distill's feature-level teachers.

DSCNN-VGGS-I (VGGSound-50k) concatenates its audio (256) and visual (128) branch outputs and applies
``fc1`` 384->320 and ``fc2`` 320->160, each with ReLU; MLP-I (CrisisMMD-V2) concatenates image (512)
and text (512) and applies ``fc1`` 1024->512 and ``fc2`` 512->256. ``ConcatFusion`` has one layer
only, so it cannot hold both masked layers of the official recipe (``fc1`` and ``fc2``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xmodal.models.fusion import drop_modalities
from xmodal.registry import MODELS


@MODELS.register_module()
class MLPFusion(nn.Module):
    """Concatenate ``{modality: (B, D_m)}`` in ``order``, then ``fc1 -> ReLU -> fc2 -> ReLU -> ...``.

    Args:
        in_dims: ``{modality: width}`` (filled in by ``ModalityClassifier``).
        hidden_dims: output width of each layer; the last one is ``out_dim``.
        order: concatenation order; default sorted names. The official teachers put audio before
            visual and image before text, which is also the sorted order.
        dropout: before each layer (0 in the official models).
        modality_dropout: see ``xmodal.models.fusion.drop_modalities`` (0 in the official models).
        activation: ReLU after each layer (AV-MNIST's CNN-I has none between its fc1 and fc2).

    The concatenated features pass through ``concat`` (an identity), so a hook or mask can reach them.
    """

    catalogue_input = "{modality: (B, D_m)}"

    def __init__(self, in_dims: dict[str, int], hidden_dims: Sequence[int] = (320, 160),
                 order: Sequence[str] | None = None, dropout: float = 0.0, modality_dropout: float = 0.0,
                 activation: bool = True) -> None:
        super().__init__()
        self.order = list(order) if order is not None else sorted(in_dims)
        if sorted(self.order) != sorted(in_dims):
            raise ValueError(f"MLPFusion: order {self.order} does not name the modalities {sorted(in_dims)}")
        if not hidden_dims:
            raise ValueError("MLPFusion: hidden_dims is empty; expected at least one layer width")
        self.modality_dropout, self.activation = modality_dropout, activation
        self.concat = nn.Identity()
        self.num_layers = len(hidden_dims)
        self.dropout = nn.Dropout(dropout)
        prev = sum(in_dims.values())
        for i, width in enumerate(hidden_dims, start=1):
            self.add_module(f"fc{i}", nn.Linear(prev, width))
            prev = width
        self.out_dim = prev

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        features = drop_modalities(features, self.modality_dropout, self.training)
        x = self.concat(torch.cat([features[m] for m in self.order], dim=1))
        for i in range(1, self.num_layers + 1):
            x = getattr(self, f"fc{i}")(self.dropout(x))
            x = torch.relu(x) if self.activation else x
        return x
