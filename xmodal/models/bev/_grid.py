"""The BEV grid shared by every part of a BEV detector: the LiDAR-frame point-cloud range and the cell size.

All BEV maps of a detector (pillar canvas, lift-splat canvas, neck output, head maps) live on one grid:
``BEVGrid`` of :mod:`xmodal.distill.unidistill` (rows along y, columns along x, cell (i, j) spans
[x0 + j·step, x0 + (j + 1)·step) × [y0 + i·step, ...)), built with stride 1, so a UniDistill loss given the
same ``point_cloud_range`` and ``cell_size`` (and ``stride=1``) reads the detector's maps at the right places.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from xmodal.distill.unidistill import BEVGrid

# nuScenes default: [-54, 54] m in x and y (UniDistill's range), 0.6 m cells -> 180 x 180
NUSCENES_POINT_CLOUD_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
NUSCENES_CELL_SIZE = 0.6


def build_grid(where: str, grid: Mapping | None) -> tuple[BEVGrid, tuple[float, float]]:
    """``grid = dict(point_cloud_range=(x0, y0, z0, x1, y1, z1), cell_size=c)`` -> (BEVGrid, (z0, z1))."""
    grid = dict(grid or {})
    unknown = sorted(set(grid) - {"point_cloud_range", "cell_size"})
    if unknown:
        raise ValueError(f"{where}: unknown grid keys {unknown}; expected point_cloud_range and cell_size")
    pcr = [float(v) for v in grid.get("point_cloud_range", NUSCENES_POINT_CLOUD_RANGE)]
    if len(pcr) != 6 or not (pcr[3] > pcr[0] and pcr[4] > pcr[1] and pcr[5] > pcr[2]):
        raise ValueError(f"{where}: point_cloud_range must be (x_min, y_min, z_min, x_max, y_max, z_max) with "
                         f"max > min, got {grid.get('point_cloud_range')}")
    cell = grid.get("cell_size", NUSCENES_CELL_SIZE)
    if isinstance(cell, Sequence):  # one size for x and y: the head's radius and NMS rules assume square cells
        raise ValueError(f"{where}: cell_size must be one number (square cells), got {cell}")
    return BEVGrid.build(pcr, float(cell), 1), (pcr[2], pcr[5])


def grid_cells(xy: torch.Tensor, grid: BEVGrid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., 2) metres -> integer (column, row) of the cell holding each point and whether it is on the grid
    (non-finite points are off the grid; their indices are clamped so they can still index safely)."""
    origin = xy.new_tensor(grid.origin)
    step = xy.new_tensor(grid.step)
    cont = torch.floor((xy - origin) / step).nan_to_num(-1.0, -1.0, -1.0)
    height, width = grid.shape
    col, row = cont[..., 0], cont[..., 1]
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    return col.clamp(0, width - 1).long(), row.clamp(0, height - 1).long(), inside
