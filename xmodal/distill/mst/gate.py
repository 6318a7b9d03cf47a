"""MST-Distill's router: from the student's logits to a distribution over the specialised teachers."""

from __future__ import annotations

import torch
from torch import nn

from xmodal.registry import MODELS


@MODELS.register_module()
class GateNet(nn.Module):
    """Linear(C → 2C) → Linear(2C → ways), no activation in between (as in the official code)."""

    def __init__(self, num_classes: int, ways: int) -> None:
        super().__init__()
        if ways < 1:
            raise ValueError(f"GateNet: ways must be ≥ 1, got {ways}")
        self.fc1 = nn.Linear(num_classes, 2 * num_classes)
        self.fc2 = nn.Linear(2 * num_classes, ways)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(logits))
