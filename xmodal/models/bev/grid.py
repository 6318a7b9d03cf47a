"""BEV geometry: the grid every BEV map lives on, box keypoints, and CenterPoint's Gaussian radius.

All BEV maps of a detector (pillar canvas, lift-splat canvas, neck output, head maps) live on one grid:
:class:`BEVGrid` (rows along y, columns along x, cell (i, j) spans
[x0 + j·step, x0 + (j + 1)·step) × [y0 + i·step, ...)), built with stride 1, so a UniDistill loss given the
same ``point_cloud_range`` and ``cell_size`` (and ``stride=1``) reads the detector's maps at the right places.
The detectors and the UniDistill losses (:mod:`xmodal.distill.unidistill`) both import it from here.

Conventions. Boxes: (N, 7+) tensors ``[x, y, z, dx, dy, dz, yaw, ...]`` in the LiDAR frame (metres,
radians), ``dx`` the length along the heading (the x axis at yaw 0), ``dy`` the width, yaw
counter-clockwise from +x. BEV maps: (B, C, H, W) with W along x and H along y.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

KEYPOINT_NAMES = ("corner_rear_right", "corner_rear_left", "corner_front_left", "corner_front_right", "centre",
                  "mid_rear", "mid_left", "mid_front", "mid_right")
# Defaults: the official nuScenes grid, [-54, 54] m at 0.075 m voxels, head stride 8 → 180 × 180.
NUSCENES_BEV_RANGE = (-54.0, -54.0, 54.0, 54.0)
MIN_BOX_COLUMNS = 7


@dataclasses.dataclass(frozen=True)
class BEVGrid:
    """The output grid: ``origin`` (x_min, y_min) in metres, ``step`` metres per output cell along
    x and y, ``shape`` (H, W)."""

    origin: tuple[float, float]
    step: tuple[float, float]
    shape: tuple[int, int]

    @classmethod
    def build(cls, bev_range: Sequence[float], cell_size: float | Sequence[float], stride: int) -> BEVGrid:
        values = [float(v) for v in bev_range]
        if len(values) == 6:  # a point-cloud range (x_min, y_min, z_min, x_max, y_max, z_max)
            values = [values[0], values[1], values[3], values[4]]
        if len(values) != 4 or not (values[2] > values[0] and values[3] > values[1]):
            raise ValueError(f"UniDistill: bev_range must be (x_min, y_min, x_max, y_max) or a 6-value point-cloud "
                             f"range with max > min, got {tuple(bev_range)}")
        cells = (float(cell_size),) * 2 if isinstance(cell_size, (int, float)) else tuple(float(c) for c in cell_size)
        if len(cells) < 2 or min(cells[:2]) <= 0 or int(stride) != stride or stride < 1:
            raise ValueError(f"UniDistill: cell_size must be > 0 (one value or (x, y)) and stride a positive "
                             f"integer, got cell_size={cell_size}, stride={stride}")
        stride = int(stride)
        # like the detectors: voxels = round(extent / cell), output cells = voxels // stride
        width = round((values[2] - values[0]) / cells[0]) // stride
        height = round((values[3] - values[1]) / cells[1]) // stride
        if width < 1 or height < 1:
            raise ValueError(f"UniDistill: bev_range {tuple(bev_range)} with cell_size {cell_size} and stride "
                             f"{stride} gives an empty grid ({height}, {width})")
        return cls((values[0], values[1]), (cells[0] * stride, cells[1] * stride), (height, width))


def box_keypoints(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 7+) boxes → (N, 9, 2) keypoints (x, y) in metres, in ``KEYPOINT_NAMES`` order.

    In the box frame (+x along the heading, +y to its left) the corners are (−dx/2, −dy/2),
    (−dx/2, +dy/2), (+dx/2, +dy/2), (+dx/2, −dy/2), then the centre, then the midpoints of the
    edges c0c1, c1c2, c2c3, c3c0; all rotated counter-clockwise by yaw and shifted to (x, y)."""
    check_box_tensor("box_keypoints", boxes, "boxes")
    x, y, dx, dy, yaw = boxes[:, 0], boxes[:, 1], boxes[:, 3], boxes[:, 4], boxes[:, 6]
    signs = boxes.new_tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [1.0, -1.0]])
    corners = 0.5 * signs * torch.stack([dx, dy], dim=-1)[:, None, :]  # (N, 4, 2)
    nxt = corners.roll(-1, dims=1)
    local = torch.cat([corners, corners.new_zeros(len(boxes), 1, 2), 0.5 * (corners + nxt)], dim=1)
    cos, sin = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
    px = local[..., 0] * cos - local[..., 1] * sin + x[:, None]
    py = local[..., 0] * sin + local[..., 1] * cos + y[:, None]
    return torch.stack([px, py], dim=-1)


def to_grid(points: torch.Tensor, bev_range: Sequence[float], cell_size: float | Sequence[float],
            stride: int) -> torch.Tensor:
    """(..., 2) metres → (..., 2) continuous output-grid coordinates (u along W/x, v along H/y);
    cell (row i, column j) spans [j, j + 1) × [i, i + 1), so its centre is (j + 0.5, i + 0.5)."""
    return grid_coords(points, BEVGrid.build(bev_range, cell_size, stride))


def grid_coords(points: torch.Tensor, grid: BEVGrid) -> torch.Tensor:
    """:func:`to_grid` for an already built grid."""
    origin = points.new_tensor(grid.origin)
    step = points.new_tensor(grid.step)
    return (points - origin) / step


def sample_bev(feature: torch.Tensor, grid_points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of (B, C, H, W) maps at (B, P, 2) grid coordinates (``to_grid``) → (B, P, C).

    ``align_corners=False`` as in the official code, so a cell centre returns that cell's value.
    Between the outermost cell centres and the map edge the edge value is used (``border``
    padding; the official code fades to zero there)."""
    if feature.dim() != 4 or grid_points.dim() != 3 or grid_points.shape[-1] != 2 \
            or grid_points.shape[0] != feature.shape[0]:
        raise ValueError(f"sample_bev: expected a (B, C, H, W) map and (B, P, 2) grid points, got "
                         f"{tuple(feature.shape)} and {tuple(grid_points.shape)}")
    height, width = feature.shape[-2:]
    scale = grid_points.new_tensor([2.0 / width, 2.0 / height])
    normalised = (grid_points * scale - 1.0).to(feature.dtype)
    sampled = F.grid_sample(feature, normalised[:, None], mode="bilinear", padding_mode="border",
                            align_corners=False)  # (B, C, 1, P)
    return sampled[:, :, 0].transpose(1, 2)


def gaussian_radius(height: float | torch.Tensor, width: float | torch.Tensor,
                    min_overlap: float = 0.7) -> float | torch.Tensor:
    """CenterNet/CenterPoint radius (in cells) for a (height, width) box: the smallest of the three
    quadratic roots that keep IoU ≥ ``min_overlap`` for a corner shifted by r, with CenterPoint's
    ``(b + √(b² − 4ac)) / 2`` form kept as is (it is what the heatmaps were trained with)."""
    if not 0 < min_overlap < 1:
        raise ValueError(f"gaussian_radius: min_overlap must lie in (0, 1), got {min_overlap}")
    sqrt = torch.sqrt if isinstance(height, torch.Tensor) or isinstance(width, torch.Tensor) else math.sqrt
    hw, total = height * width, height + width
    c1 = hw * (1 - min_overlap) / (1 + min_overlap)
    r1 = (total + sqrt(total**2 - 4 * c1)) / 2
    b2, c2 = 2 * total, (1 - min_overlap) * hw
    r2 = (b2 + sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * total, (min_overlap - 1) * hw
    r3 = (b3 + sqrt(b3**2 - 4 * a3 * c3)) / 2
    if sqrt is math.sqrt:
        return min(r1, r2, r3)
    return torch.minimum(torch.minimum(torch.as_tensor(r1), torch.as_tensor(r2)), torch.as_tensor(r3))


def draw_gaussian_mask(boxes: torch.Tensor, bev_range: Sequence[float], cell_size: float | Sequence[float],
                       stride: int, min_overlap: float = 0.7, min_radius: int = 0) -> torch.Tensor:
    """(H, W) mask: per box, exp(−(Δi² + Δj²) / 2σ²) over the (2r + 1)² cells around its centre cell,
    σ = (2r + 1) / 6, r = max(min_radius, ⌊gaussian_radius(dy, dx in cells)⌋); boxes merged by max."""
    check_box_tensor("draw_gaussian_mask", boxes, "boxes")
    return gaussian_mask(boxes, BEVGrid.build(bev_range, cell_size, stride), min_overlap, min_radius)[0]


def gaussian_mask(boxes: torch.Tensor, grid: BEVGrid, min_overlap: float, min_radius: int,
                   chunk: int = 64) -> tuple[torch.Tensor, int]:
    """The mask and the number of boxes that draw nothing on it (non-finite, or so far off the grid
    that their Gaussian misses it). As in the official ``calculate_box_mask_gaussian``, the centre
    cell is ``int()`` of the grid coordinate (truncation towards zero) and a centre off the grid
    still draws the part of its Gaussian that lies on it."""
    height, width = grid.shape
    b = boxes.detach().float()
    finite = torch.isfinite(b[:, [0, 1, 3, 4]]).all(1)
    b, centre = b[finite], torch.trunc(grid_coords(b[finite, :2], grid))
    size = b[:, [3, 4]].clamp_min(0) / b.new_tensor(grid.step)  # (dx, dy) in cells
    radius = torch.floor(gaussian_radius(size[:, 1], size[:, 0], min_overlap)).clamp_min(min_radius)
    reaches = (centre[:, 0] + radius >= 0) & (centre[:, 0] - radius < width) \
        & (centre[:, 1] + radius >= 0) & (centre[:, 1] - radius < height)
    b, centre, radius = b[reaches], centre[reaches], radius[reaches]
    mask = boxes.new_zeros(grid.shape, dtype=torch.float32)
    rows = torch.arange(height, device=boxes.device, dtype=torch.float32)
    cols = torch.arange(width, device=boxes.device, dtype=torch.float32)
    for start in range(0, len(b), chunk):  # chunks bound the (boxes, H, W) intermediate
        r = radius[start:start + chunk, None]
        two_sigma_sq = 2 * ((2 * r + 1) / 6) ** 2
        d_row = rows[None] - centre[start:start + chunk, 1:2]
        d_col = cols[None] - centre[start:start + chunk, 0:1]
        g_row = torch.exp(-d_row**2 / two_sigma_sq) * (d_row.abs() <= r)
        g_col = torch.exp(-d_col**2 / two_sigma_sq) * (d_col.abs() <= r)
        mask = torch.maximum(mask, (g_row[:, :, None] * g_col[:, None, :]).amax(0))
    return mask, len(boxes) - len(b)


def check_box_tensor(where: str, boxes: object, label: str) -> None:
    """A floating (N, 7+) box tensor, else an error naming ``where`` and ``label``."""
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] < MIN_BOX_COLUMNS \
            or not boxes.is_floating_point():
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"{where}: {label} is {shape}; expected a floating (N, 7+) tensor of boxes "
                         f"[x, y, z, dx, dy, dz, yaw, ...]")



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
