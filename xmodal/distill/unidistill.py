"""UniDistill's three BEV distillation losses (Zhou et al., CVPR 2023, "UniDistill: A Universal
Cross-Modality Knowledge Distillation Framework for 3D Object Detection in Bird's-Eye View").

Teacher and student are BEV detectors of any modality (camera, LiDAR, fusion); their BEV maps share
one grid, so knowledge is compared at the same places: 9 keypoints per ground-truth box (4 corners,
centre, 4 edge midpoints) and the neighbourhood of each box centre.

* feature (low-level BEV map F):  mean over boxes of  1/(9C) Σ_k Σ_c |F_s(p_k)_c − F_t(p_k)_c|
* relation (high-level BEV map):  R_kl = cos(f(p_k), f(p_l)) over the box's 9 keypoints,
                                  mean over boxes of  1/81 Σ_kl |R_s,kl − R_t,kl|
* response (detection head):      Σ_xy M·|max_c σ(h_s/T_s) − max_c σ(h_t/T_t)| / Σ M
                                  + Σ_xy M·mean_r |r_s − r_t| / Σ M
  with M the max over boxes of a Gaussian around each centre cell (CenterPoint's radius rule).

Facts from the official code (megvii-research/CVPR2023-UniDistill, the four ``*_exp_distill_*.py``):
F(p) is bilinear sampling with ``grid_sample(align_corners=False)`` where grid cell j spans
[j, j + 1) grid units; the relation uses f / (‖f‖ + 1e-4); the teacher heatmap is
σ(logit / 2), the student's σ(logit); the regression maps (offset, height, size, sin/cos yaw,
velocity and, for the IoU-aware head, IoU) are compared channel-averaged; the Gaussian radius is
``max(0, int(r(min_overlap=0.7)))`` (no minimum of 2 here, unlike CenterPoint's heatmap targets), its
centre cell ``int()`` of the grid coordinate, and a box centred off the grid still draws the part of
its Gaussian on the grid;
per-path weights are ``UNIDISTILL_WEIGHTS``.

Conventions. Boxes: one (N_i, 7+) tensor per sample, ``[x, y, z, dx, dy, dz, yaw, ...]`` in the
LiDAR frame (metres, radians), ``dx`` the length along the heading (the x axis at yaw 0), ``dy`` the
width, yaw counter-clockwise from +x: OpenPCDet's and mmdet3d ≥ 1.0's LiDAR boxes, as in the
official code. BEV maps: (B, C, H, W) with W along x and H along y (row = y cell, column = x cell),
the layout of CenterPoint heads and of spconv/LSS BEV maps, used by all three losses (the official
keypoint sampling swaps the two grid axes, i.e. reads row = x, the transpose of its own heatmap
layout). Keypoints outside the map (or of non-finite boxes) are dropped and counted in
``last_dropped_keypoints``; the official code samples zeros there and still counts them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses._checks import check_temperature
from xmodal.registry import MODELS

# Weights of (feature, relation, response) in the total loss, per teacher → student path, from
# the official experiment files; response = cls + reg.
UNIDISTILL_WEIGHTS: dict[str, dict[str, float]] = {
    "camera_from_lidar": dict(feature=100.0, relation=40.0, response=10.0),
    "camera_from_fusion": dict(feature=10.0, relation=5.0, response=10.0),
    "lidar_from_camera": dict(feature=10.0, relation=5.0, response=1.0),
    "lidar_from_fusion": dict(feature=10.0, relation=1.0, response=10.0),
}

KEYPOINT_NAMES = ("corner_rear_right", "corner_rear_left", "corner_front_left", "corner_front_right", "centre",
                  "mid_rear", "mid_left", "mid_front", "mid_right")
# Defaults: the official nuScenes grid, [-54, 54] m at 0.075 m voxels, head stride 8 → 180 × 180.
NUSCENES_BEV_RANGE = (-54.0, -54.0, 54.0, 54.0)
_MIN_BOX_COLUMNS = 7


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
    _check_box_tensor("box_keypoints", boxes, "boxes")
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
    return _to_grid(points, BEVGrid.build(bev_range, cell_size, stride))


def _to_grid(points: torch.Tensor, grid: BEVGrid) -> torch.Tensor:
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
    _check_box_tensor("draw_gaussian_mask", boxes, "boxes")
    return _gaussian_mask(boxes, BEVGrid.build(bev_range, cell_size, stride), min_overlap, min_radius)[0]


def _gaussian_mask(boxes: torch.Tensor, grid: BEVGrid, min_overlap: float, min_radius: int,
                   chunk: int = 64) -> tuple[torch.Tensor, int]:
    """The mask and the number of boxes that draw nothing on it (non-finite, or so far off the grid
    that their Gaussian misses it). As in the official ``calculate_box_mask_gaussian``, the centre
    cell is ``int()`` of the grid coordinate (truncation towards zero) and a centre off the grid
    still draws the part of its Gaussian that lies on it."""
    height, width = grid.shape
    b = boxes.detach().float()
    finite = torch.isfinite(b[:, [0, 1, 3, 4]]).all(1)
    b, centre = b[finite], torch.trunc(_to_grid(b[finite, :2], grid))
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


def _check_box_tensor(where: str, boxes: object, label: str) -> None:
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] < _MIN_BOX_COLUMNS \
            or not boxes.is_floating_point():
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"{where}: {label} is {shape}; expected a floating (N, 7+) tensor of boxes "
                         f"[x, y, z, dx, dy, dz, yaw, ...]")


def _check_boxes(where: str, gt_boxes: object, batch: int) -> list[torch.Tensor]:
    # a padded (B, M, 7+) tensor is refused: its all-zero padding rows would count as boxes
    if not isinstance(gt_boxes, (list, tuple)):
        got = tuple(gt_boxes.shape) if isinstance(gt_boxes, torch.Tensor) else type(gt_boxes).__name__
        raise ValueError(f"{where}: gt_boxes must be a list with one (N_i, 7+) box tensor per sample (padding "
                         f"removed), got {got}")
    boxes = list(gt_boxes)
    if len(boxes) != batch:
        raise ValueError(f"{where}: {len(boxes)} box tensors for a batch of {batch} BEV maps")
    for i, b in enumerate(boxes):
        _check_box_tensor(where, b, f"gt_boxes[{i}]")
    return boxes


def _check_map(where: str, label: str, x: torch.Tensor, grid: BEVGrid) -> None:
    if x.dim() != 4 or tuple(x.shape[-2:]) != grid.shape:
        raise ValueError(f"{where}: {label} is {tuple(x.shape)}; expected (B, C, H, W) with (H, W) = {grid.shape}, "
                         f"the grid of bev_range/cell_size/stride")


def _zero_with_graph(x: torch.Tensor) -> torch.Tensor:
    """0 that is still connected to ``x`` (gradient 0), even where x holds inf or NaN."""
    return x.float().flatten()[:0].sum()


class _BoxKeypointLoss(nn.Module):
    def __init__(self, bev_range: Sequence[float] = NUSCENES_BEV_RANGE, cell_size: float | Sequence[float] = 0.075,
                 stride: int = 8) -> None:
        super().__init__()
        self.grid = BEVGrid.build(bev_range, cell_size, stride)
        self.last_dropped_keypoints = torch.zeros((), dtype=torch.long)
        self.last_num_boxes = 0

    def _check_pair(self, student: torch.Tensor, teacher: torch.Tensor, same_channels: bool) -> None:
        name = type(self).__name__
        _check_map(name, "student", student, self.grid)
        _check_map(name, "teacher", teacher, self.grid)
        differ = student.shape != teacher.shape if same_channels else \
            (student.shape[0], *student.shape[2:]) != (teacher.shape[0], *teacher.shape[2:])
        if differ:
            hint = "; give the loss term a connector (e.g. dict(type='ConvConnector', ...))" if same_channels else ""
            raise ValueError(f"{name}: student BEV map {tuple(student.shape)} and teacher BEV map "
                             f"{tuple(teacher.shape)} differ{hint}")

    def _sample(self, student: torch.Tensor, teacher: torch.Tensor, gt_boxes: object):
        """Keypoint features (B, M, 9, C) of both maps, M = most boxes in a sample, and ``valid``
        (B, M, 9): a real box's keypoint that lies on the map; None when there is no box at all."""
        batch = student.shape[0]
        boxes = _check_boxes(type(self).__name__, gt_boxes, batch)
        most = max((len(b) for b in boxes), default=0)
        self.last_num_boxes = sum(len(b) for b in boxes)
        if most == 0:
            self.last_dropped_keypoints = torch.zeros((), dtype=torch.long, device=student.device)
            return None
        points = student.new_zeros(batch, most, 9, 2, dtype=torch.float32)
        real = torch.zeros(batch, most, 9, dtype=torch.bool, device=student.device)
        for i, b in enumerate(boxes):
            if len(b):
                points[i, :len(b)] = _to_grid(box_keypoints(b.detach().to(student.device, torch.float32)), self.grid)
                real[i, :len(b)] = True
        height, width = self.grid.shape
        inside = torch.isfinite(points).all(-1) & (points[..., 0] >= 0) & (points[..., 0] <= width) \
            & (points[..., 1] >= 0) & (points[..., 1] <= height)
        valid = real & inside
        self.last_dropped_keypoints = (real & ~valid).sum().detach()
        flat = torch.where(valid[..., None], points, 0.0).view(batch, most * 9, 2)
        s = sample_bev(student.float(), flat).view(batch, most, 9, -1)
        t = sample_bev(teacher.detach().float(), flat).view(batch, most, 9, -1)
        return s, t, valid

    @staticmethod
    def _mean_over_boxes(per_box_sum: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """Per box: sum / its count of valid terms; then the mean over boxes with any valid term
        (the official code divides by the number of boxes in the batch)."""
        has = count > 0
        per_box = torch.where(has, per_box_sum / count.clamp_min(1), 0.0)
        return per_box.sum() / has.sum().clamp_min(1)


@MODELS.register_module()
class UniDistillFeatureLoss(_BoxKeypointLoss):
    """L1 between student and teacher low-level BEV features at the 9 keypoints of each GT box;
    same channel count needed (give the term a connector otherwise)."""

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor, gt_boxes: object) -> torch.Tensor:
        self._check_pair(student_feat, teacher_feat, same_channels=True)
        sampled = self._sample(student_feat, teacher_feat, gt_boxes)
        if sampled is None:
            return _zero_with_graph(student_feat)
        s, t, valid = sampled
        per_keypoint = torch.where(valid, (s - t).abs().mean(-1), 0.0)  # mean over channels
        return self._mean_over_boxes(per_keypoint.sum(-1), valid.sum(-1))


@MODELS.register_module()
class UniDistillRelationLoss(_BoxKeypointLoss):
    """L1 between the 9 × 9 cosine-similarity matrices of each box's keypoint features in the
    student's and the teacher's high-level BEV maps (channel counts may differ)."""

    def __init__(self, bev_range: Sequence[float] = NUSCENES_BEV_RANGE, cell_size: float | Sequence[float] = 0.075,
                 stride: int = 8, eps: float = 1e-4) -> None:
        super().__init__(bev_range, cell_size, stride)
        # f / (‖f‖ + eps) as in the official code: an all-zero (e.g. post-ReLU) keypoint feature
        # gets zero similarities and a gradient bounded by 1 / eps instead of 1 / 1e-12
        self.eps = float(eps)

    def _relations(self, x: torch.Tensor) -> torch.Tensor:
        unit = x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + self.eps)
        return unit @ unit.transpose(-1, -2)

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor, gt_boxes: object) -> torch.Tensor:
        self._check_pair(student_feat, teacher_feat, same_channels=False)
        sampled = self._sample(student_feat, teacher_feat, gt_boxes)
        if sampled is None:
            return _zero_with_graph(student_feat)
        s, t, valid = sampled
        pairs = valid[..., :, None] & valid[..., None, :]  # (B, M, 9, 9): both keypoints on the map
        diff = torch.where(pairs, (self._relations(s) - self._relations(t)).abs(), 0.0)
        return self._mean_over_boxes(diff.sum((-1, -2)), pairs.sum((-1, -2)))


def _channels(where: str, label: str, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """A (B, K, H, W) map, or per-task maps (CenterPoint's multi-task heads) joined along channels."""
    if not isinstance(x, torch.Tensor):
        if not isinstance(x, Sequence) or not x or not all(isinstance(m, torch.Tensor) and m.dim() == 4 for m in x):
            raise ValueError(f"{where}: {label} must be a (B, K, H, W) tensor or a list of them, "
                             f"got {type(x).__name__}")
        x = torch.cat(list(x), dim=1)
    return x


@MODELS.register_module()
class UniDistillResponseLoss(nn.Module):
    """Gaussian-masked L1 between the heads' class-max heatmaps (σ(logit / T)) and, when given,
    their regression maps; returns cls_weight · cls + reg_weight · reg (the code adds them)."""

    def __init__(self, bev_range: Sequence[float] = NUSCENES_BEV_RANGE, cell_size: float | Sequence[float] = 0.075,
                 stride: int = 8, student_temperature: float = 1.0, teacher_temperature: float = 2.0,
                 min_overlap: float = 0.7, min_radius: int = 0, cls_weight: float = 1.0,
                 reg_weight: float = 1.0) -> None:
        super().__init__()
        self.grid = BEVGrid.build(bev_range, cell_size, stride)
        self.student_temperature = check_temperature("UniDistillResponseLoss", student_temperature)
        self.teacher_temperature = check_temperature("UniDistillResponseLoss", teacher_temperature)
        gaussian_radius(1.0, 1.0, min_overlap)  # validates min_overlap now rather than at the first batch
        if min_radius < 0:
            raise ValueError(f"UniDistillResponseLoss: min_radius must be >= 0, got {min_radius}")
        self.min_overlap, self.min_radius = float(min_overlap), int(min_radius)
        self.cls_weight, self.reg_weight = float(cls_weight), float(reg_weight)
        self.last_terms: dict[str, torch.Tensor] = {}
        self.last_skipped_boxes = 0

    def forward(self, student_heatmap: torch.Tensor | Sequence[torch.Tensor],
                teacher_heatmap: torch.Tensor | Sequence[torch.Tensor], gt_boxes: object,
                student_regression: torch.Tensor | Sequence[torch.Tensor] | None = None,
                teacher_regression: torch.Tensor | Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        name = type(self).__name__
        hs = _channels(name, "student_heatmap", student_heatmap)
        ht = _channels(name, "teacher_heatmap", teacher_heatmap).detach()
        _check_map(name, "student heatmap", hs, self.grid)
        _check_map(name, "teacher heatmap", ht, self.grid)
        if hs.shape[0] != ht.shape[0]:
            raise ValueError(f"{name}: student heatmap {tuple(hs.shape)} and teacher heatmap {tuple(ht.shape)} "
                             f"have different batch sizes")
        if (student_regression is None) != (teacher_regression is None):
            raise ValueError(f"{name}: give both student_regression and teacher_regression, or neither")
        boxes = _check_boxes(name, gt_boxes, hs.shape[0])
        masks, skipped = [], 0
        for b in boxes:
            mask, n = _gaussian_mask(b.to(hs.device), self.grid, self.min_overlap, self.min_radius)
            masks.append(mask)
            skipped += n
        mask = torch.stack(masks)  # (B, H, W)
        self.last_skipped_boxes = skipped
        # a mask-weighted mean, as the official Σ M·d / (Σ M + 1e-4); a box off the grid may leave only
        # part of its Gaussian, so Σ M can be below 1: only an empty mask (0 / 0) is special, giving 0
        total = mask.sum()
        total = torch.where(total > 0, total, torch.ones_like(total))
        cls_s = torch.sigmoid(hs.float() / self.student_temperature).amax(1)
        cls_t = torch.sigmoid(ht.float() / self.teacher_temperature).amax(1)
        cls = torch.where(mask > 0, (cls_s - cls_t).abs() * mask, 0.0).sum() / total
        loss = self.cls_weight * cls
        self.last_terms = {"cls": cls.detach()}
        if student_regression is not None:
            rs = _channels(name, "student_regression", student_regression)
            rt = _channels(name, "teacher_regression", teacher_regression).detach()
            if rs.shape != rt.shape or rs.shape[0] != hs.shape[0] or rs.shape[-2:] != hs.shape[-2:]:
                raise ValueError(f"{name}: student regression {tuple(rs.shape)} and teacher regression "
                                 f"{tuple(rt.shape)} must match each other and the heatmaps' (B, H, W) "
                                 f"{(hs.shape[0], *hs.shape[-2:])}")
            diff = (rs.float() - rt.float()).abs().mean(1)
            reg = torch.where(mask > 0, diff * mask, 0.0).sum() / total
            loss = loss + self.reg_weight * reg
            self.last_terms["reg"] = reg.detach()
        return loss


def unidistill_terms(path: str, teacher: str, grid: Mapping) -> list[dict]:
    """The three Distiller loss terms of one UniDistill path (``"camera_from_lidar"``, ...) with the path's
    weights, for a student and a teacher ``BEVDetector`` on the same ``grid`` (``point_cloud_range``,
    ``cell_size``; every output at the grid's resolution, so stride 1)::

        losses = unidistill_terms("camera_from_lidar", "t_lidar", grid)
    """
    if path not in UNIDISTILL_WEIGHTS:
        raise KeyError(f"unidistill_terms: unknown path {path!r}; expected one of {sorted(UNIDISTILL_WEIGHTS)}")
    weights = UNIDISTILL_WEIGHTS[path]
    where = dict(bev_range=tuple(grid["point_cloud_range"]), cell_size=grid["cell_size"], stride=1)
    boxes = dict(gt_boxes="batch.gt_boxes")
    return [
        dict(type="UniDistillFeatureLoss", name="feature", weight=weights["feature"], student="bev_low",
             teacher=f"{teacher}.bev_low", inputs=boxes, **where),
        dict(type="UniDistillRelationLoss", name="relation", weight=weights["relation"], student="bev_high",
             teacher=f"{teacher}.bev_high", inputs=boxes, **where),
        dict(type="UniDistillResponseLoss", name="response", weight=weights["response"], student="heatmap",
             teacher=f"{teacher}.heatmap", inputs=dict(boxes, student_regression="student.regression",
                                                       teacher_regression=f"{teacher}.regression"), **where),
    ]
