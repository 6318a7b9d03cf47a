"""Fusion of per-modality embeddings {modality: (B, D_m)} into one (B, out_dim) embedding."""

from __future__ import annotations

import torch
from torch import nn

from xmodal.registry import MODELS


@MODELS.register_module()
def drop_modalities(features: dict[str, torch.Tensor], p: float, training: bool) -> dict[str, torch.Tensor]:
    """Modality dropout: in training, each sample loses one randomly chosen modality with
    probability ``p`` (its features zeroed), so the fused model cannot lean on one modality only."""
    if not training or p <= 0 or len(features) < 2:
        return features
    order = sorted(features)
    ref = features[order[0]]
    drop = torch.rand(ref.shape[0], device=ref.device) < p
    which = torch.randint(len(order), (ref.shape[0],), device=ref.device)
    return {m: f * ~(drop & (which == i)).view(-1, *([1] * (f.dim() - 1))) for i, (m, f) in
            enumerate((m, features[m]) for m in order)}


@MODELS.register_module()
class ConcatFusion(nn.Module):
    """Concatenate in a fixed modality order, then ``fc1`` (Linear + ReLU)."""

    catalogue_input = "{modality: (B, D_m)}"

    def __init__(self, in_dims: dict[str, int], out_dim: int = 128, dropout: float = 0.0,
                 modality_dropout: float = 0.0) -> None:
        super().__init__()
        self.order = sorted(in_dims)
        self.out_dim = out_dim
        self.modality_dropout = modality_dropout
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(sum(in_dims.values()), out_dim)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        features = drop_modalities(features, self.modality_dropout, self.training)
        x = torch.cat([features[m] for m in self.order], dim=1)
        return torch.relu(self.fc1(self.dropout(x)))


@MODELS.register_module()
class AttentionFusion(nn.Module):
    """One token per modality (projected to ``dim``, plus a learned modality embedding), a
    transformer encoder layer across the tokens, then mean pooling."""

    catalogue_input = "{modality: (B, D_m)}"

    def __init__(self, in_dims: dict[str, int], dim: int = 128, num_heads: int = 4, num_layers: int = 1,
                 dropout: float = 0.0, modality_dropout: float = 0.0) -> None:
        super().__init__()
        self.modality_dropout = modality_dropout
        self.order = sorted(in_dims)
        self.out_dim = dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in in_dims.items()})
        self.modality_embed = nn.Parameter(torch.zeros(len(self.order), dim))
        layer = nn.TransformerEncoderLayer(dim, num_heads, dim_feedforward=2 * dim, dropout=dropout,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        features = drop_modalities(features, self.modality_dropout, self.training)
        tokens = torch.stack([self.proj[m](features[m]) for m in self.order], dim=1) + self.modality_embed
        return self.encoder(tokens).mean(dim=1)
