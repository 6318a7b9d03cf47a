"""Concatenate-and-convolve fusion of LiDAR and camera BEV maps (BEVFusion's ``ConvFuser``, Liu et al.,
ICRA 2023, "BEVFusion: Multi-Task Multi-Sensor Fusion with Unified Bird's-Eye View Representation"):
F = ReLU(BN(conv3×3([F_lidar; F_camera]))), both maps on the same grid."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xmodal.registry import MODELS


@MODELS.register_module()
class ConvBEVFuser(nn.Module):
    """(B, C_l, H, W) + (B, C_c, H, W) -> (B, ``out_channels``, H, W)."""

    def __init__(self, in_channels: Sequence[int] = (64, 64), out_channels: int = 64) -> None:
        super().__init__()
        self.in_channels = tuple(int(c) for c in in_channels)
        if len(self.in_channels) != 2:
            raise ValueError(f"ConvBEVFuser: in_channels must be (lidar, camera) channels, got {tuple(in_channels)}")
        self.out_channels = int(out_channels)
        self.fuse = nn.Sequential(nn.Conv2d(sum(self.in_channels), out_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(out_channels), nn.ReLU(True))

    def forward(self, lidar_bev: torch.Tensor, camera_bev: torch.Tensor) -> torch.Tensor:
        if lidar_bev.dim() != 4 or camera_bev.dim() != 4 or lidar_bev.shape[0] != camera_bev.shape[0] \
                or lidar_bev.shape[-2:] != camera_bev.shape[-2:] \
                or (lidar_bev.shape[1], camera_bev.shape[1]) != self.in_channels:
            raise ValueError(f"ConvBEVFuser: LiDAR BEV {tuple(lidar_bev.shape)} and camera BEV "
                             f"{tuple(camera_bev.shape)} must be (B, C, H, W) maps on one grid with channels "
                             f"{self.in_channels}")
        return self.fuse(torch.cat([lidar_bev, camera_bev], dim=1))
