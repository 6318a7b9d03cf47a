"""PointPillars' pillar feature net and scatter (Lang et al., CVPR 2019, "PointPillars: Fast Encoders for
Object Detection from Point Clouds"): LiDAR points -> a (B, C, H, W) BEV canvas.

Each point falls in the pillar (a BEV grid cell, unbounded in z within the z range) under it and is
decorated to D + 5 values: its own D columns (x, y, z, intensity, time lag), its offset to the mean of
its pillar's points (x_c, y_c, z_c) and its offset to the pillar centre in x and y (x_p, y_p). A shared
PointNet layer, linear (no bias) + BatchNorm + ReLU, maps them to C features and a max over the
pillar's points gives the pillar feature, written to its cell of the canvas (empty cells stay 0).

Facts from CenterPoint's nuScenes pillar config (mmdetection3d ``centerpoint_pillar02_second_secfpn_nus``):
5 input columns, 64 features, at most 20 points per pillar (the first ones in the cloud's order are
kept), BatchNorm eps 1e-3 and momentum 0.01. Unlike the official dense (pillars × max points) tensors,
nothing is padded here: statistics and maxima cover the real points only (the official padded zeros
enter BatchNorm and the max); there is no cap on the number of pillars since the canvas is dense anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from xmodal.models.bev.grid import build_grid, grid_cells
from xmodal.registry import MODELS


def check_points(where: str, points: object, columns: int) -> list[torch.Tensor]:
    """``points``: a list with one finite floating (N_i, columns) tensor per sample."""
    if isinstance(points, torch.Tensor) or not isinstance(points, Sequence) or not points:
        got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"{where}: batch field 'points' must be a non-empty list with one (N_i, {columns}) tensor "
                         f"per sample, got {got}")
    for i, p in enumerate(points):
        if not isinstance(p, torch.Tensor) or p.dim() != 2 or p.shape[1] != columns or not p.is_floating_point():
            got = f"{tuple(p.shape)} {p.dtype}" if isinstance(p, torch.Tensor) else type(p).__name__
            raise ValueError(f"{where}: sample {i}, field 'points': expected a floating (N, {columns}) tensor "
                             f"(x, y, z, intensity, time lag), got {got}")
        bad = ~torch.isfinite(p).all(1)
        if bad.any():
            rows = torch.nonzero(bad).flatten()[:5].tolist()
            raise ValueError(f"{where}: sample {i}, field 'points': {int(bad.sum())} rows hold NaN or inf "
                             f"(first rows {rows})")
    return list(points)


@MODELS.register_module()
class PillarFeatureNet(nn.Module):
    """List of B (N_i, ``in_channels``) point tensors -> (B, ``out_channels``, H, W) BEV canvas.

    Args:
        grid: ``dict(point_cloud_range=(x0, y0, z0, x1, y1, z1), cell_size=c)``; points outside are dropped.
        in_channels: point columns (nuScenes: x, y, z, intensity, time lag).
        out_channels: PointNet features per pillar.
        max_points_per_pillar: points kept per pillar, the first ones in the cloud's order.
    """

    def __init__(self, grid: Mapping | None = None, in_channels: int = 5, out_channels: int = 64,
                 max_points_per_pillar: int = 20) -> None:
        super().__init__()
        self.grid, self.z_range = build_grid("PillarFeatureNet", grid)
        if in_channels < 3 or out_channels < 1 or max_points_per_pillar < 1:
            raise ValueError(f"PillarFeatureNet: need in_channels >= 3 (x, y, z first), out_channels >= 1 and "
                             f"max_points_per_pillar >= 1, got {in_channels}, {out_channels}, {max_points_per_pillar}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.max_points_per_pillar = int(max_points_per_pillar)
        self.linear = nn.Linear(in_channels + 5, out_channels, bias=False)
        self.norm = nn.BatchNorm1d(out_channels, eps=1e-3, momentum=0.01)
        self.act = nn.ReLU(inplace=True)

    def forward(self, points: Sequence[torch.Tensor]) -> torch.Tensor:
        points = check_points("PillarFeatureNet", points, self.in_channels)
        height, width = self.grid.shape
        device, dtype = self.linear.weight.device, self.linear.weight.dtype
        batch = len(points)
        cloud = torch.cat([p.to(device, dtype) for p in points])
        sample = torch.repeat_interleave(torch.arange(batch, device=device),
                                         torch.tensor([len(p) for p in points], device=device))
        col, row, inside = grid_cells(cloud[:, :2], self.grid)
        inside &= (cloud[:, 2] >= self.z_range[0]) & (cloud[:, 2] < self.z_range[1])
        cloud, sample, col, row = cloud[inside], sample[inside], col[inside], row[inside]
        canvas = cloud.new_zeros(batch * height * width, self.out_channels)

        # group the points by pillar (a stable sort keeps each pillar's points in cloud order) and keep
        # the first max_points_per_pillar of each
        flat = (sample * height + row) * width + col
        flat, order = torch.sort(flat, stable=True)
        pillars, pillar_of, counts = torch.unique_consecutive(flat, return_inverse=True, return_counts=True)
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(flat), device=device) - first[pillar_of]
        keep = rank < self.max_points_per_pillar
        cloud, pillar_of, col, row = cloud[order][keep], pillar_of[keep], col[order][keep], row[order][keep]
        if len(cloud) == 0:
            return canvas.view(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
        counts = counts.clamp(max=self.max_points_per_pillar).to(dtype)

        xyz = cloud[:, :3]
        mean = torch.zeros(len(pillars), 3, device=device, dtype=dtype).index_add_(0, pillar_of, xyz)
        mean = mean / counts[:, None]
        step = cloud.new_tensor(self.grid.step)
        centre = cloud.new_tensor(self.grid.origin) + (torch.stack([col, row], 1).to(dtype) + 0.5) * step
        decorated = torch.cat([cloud, xyz - mean[pillar_of], xyz[:, :2] - centre], dim=1)

        x = self.linear(decorated)
        if self.training and len(x) < 2:  # BatchNorm cannot take batch statistics of one point
            x = nn.functional.batch_norm(x, self.norm.running_mean, self.norm.running_var, self.norm.weight,
                                         self.norm.bias, training=False, eps=self.norm.eps)
        else:
            x = self.norm(x)
        x = self.act(x)
        pooled = x.new_zeros(len(pillars), self.out_channels).scatter_reduce(
            0, pillar_of[:, None].expand_as(x), x, reduce="amax", include_self=False)
        canvas = canvas.index_copy(0, pillars, pooled)
        return canvas.view(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
