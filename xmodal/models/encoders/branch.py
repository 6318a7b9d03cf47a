"""Parts shared by the branch networks of MST-Distill's benchmarks (RAVDESS, VGGSound-50k)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def add_mlp(module: nn.Module, in_dim: int, hidden_dims: Sequence[int]) -> int:
    """Register ``fc1``, ``fc2``, ... on ``module`` (the official names); returns the output width."""
    for i, width in enumerate(hidden_dims, start=1):
        module.add_module(f"fc{i}", nn.Linear(in_dim, width))
        in_dim = width
    return in_dim


def run_mlp(module: nn.Module, x: torch.Tensor, num_layers: int) -> torch.Tensor:
    for i in range(1, num_layers + 1):
        x = torch.relu(getattr(module, f"fc{i}")(x))
    return x


def check_input(name: str, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"{name}: input of shape {list(x.shape)}; expected (batch, {', '.join(map(str, shape))})")


class Conv1dBranch(nn.Module):
    """Three Conv1d k=3 (BatchNorm, ReLU, MaxPool1d 3) over ``length`` positions of ``in_channels``,
    flattened, then ReLU layers ``fc1``, ``fc2``, ... (``hidden_dims``; empty for a bare branch)."""

    def __init__(self, name: str, in_channels: int, length: int, channels: Sequence[int],
                 hidden_dims: Sequence[int]) -> None:
        super().__init__()
        if len(channels) != 3:
            raise ValueError(f"{name}: channels={tuple(channels)}; expected three widths")
        self.name, self.input_shape = name, (in_channels, length)
        c1, c2, c3 = channels
        self.conv1, self.bn1 = nn.Conv1d(in_channels, c1, 3, padding=1), nn.BatchNorm1d(c1)
        self.conv2, self.bn2 = nn.Conv1d(c1, c2, 3, padding=1), nn.BatchNorm1d(c2)
        self.conv3, self.bn3 = nn.Conv1d(c2, c3, 3, padding=1), nn.BatchNorm1d(c3)
        self.pool = nn.MaxPool1d(3)
        pooled = length // 3 // 3 // 3
        if pooled < 1:
            raise ValueError(f"{name}: length {length} is too small for three 3× poolings")
        self.branch_dim = c3 * pooled
        self.num_layers = len(hidden_dims)
        self.out_dim = add_mlp(self, self.branch_dim, hidden_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self.name, x, self.input_shape)
        x = x.to(self.conv1.weight.dtype)
        for i in (1, 2, 3):
            conv, norm = getattr(self, f"conv{i}"), getattr(self, f"bn{i}")
            x = self.pool(torch.relu(norm(conv(x))))
        return run_mlp(self, x.flatten(1), self.num_layers)
