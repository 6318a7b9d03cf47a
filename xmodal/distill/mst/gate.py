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


@MODELS.register_module()
class GateNetDense(nn.Module):
    """Router for dense (B, C, H, W) logits (segmentation): 1×1 conv C → 2C, ReLU, depthwise 3×3
    stride 2, ReLU, global average pooling, Linear(2C → ways), as the official NYU-Depth-V2 router."""

    def __init__(self, num_classes: int, ways: int) -> None:
        super().__init__()
        hidden = 2 * num_classes
        self.pointwise = nn.Conv2d(num_classes, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride=2, padding=1, groups=hidden)
        self.fc = nn.Linear(hidden, ways)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.depthwise(torch.relu(self.pointwise(logits))))
        return self.fc(x.mean(dim=(2, 3)))
