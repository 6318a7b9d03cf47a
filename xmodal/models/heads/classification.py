"""Classification head: (B, in_dim) -> logits (B, num_classes)."""

from __future__ import annotations

import torch
from torch import nn

from xmodal.registry import MODELS


@MODELS.register_module()
class ClsHead(nn.Module):
    """Optional hidden layer, dropout, then the ``fc`` layer that produces the logits."""

    catalogue_input = "(B, in_dim)"

    def __init__(self, in_dim: int, num_classes: int, hidden_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden_dim:
            layers += [nn.Linear(in_dim, hidden_dim), nn.ReLU()]
            in_dim = hidden_dim
        self.hidden = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.hidden(x)))
