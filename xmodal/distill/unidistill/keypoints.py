"""What the three UniDistill losses share: input checks and sampling both BEV maps at the 9 keypoints of
every ground-truth box."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xmodal.distill.unidistill.pseudo_boxes import check_pseudo, keypoint_boxes
from xmodal.models.bev.grid import (
    NUSCENES_BEV_RANGE,
    BEVGrid,
    box_keypoints,
    check_box_tensor,
    grid_coords,
    sample_bev,
)


def check_boxes(where: str, gt_boxes: object, batch: int) -> list[torch.Tensor]:
    """One (N_i, 7+) box tensor per sample, else an error naming the loss."""
    # a padded (B, M, 7+) tensor is refused: its all-zero padding rows would count as boxes
    if not isinstance(gt_boxes, (list, tuple)):
        got = tuple(gt_boxes.shape) if isinstance(gt_boxes, torch.Tensor) else type(gt_boxes).__name__
        raise ValueError(f"{where}: gt_boxes must be a list with one (N_i, 7+) box tensor per sample (padding "
                         f"removed), got {got}")
    boxes = list(gt_boxes)
    if len(boxes) != batch:
        raise ValueError(f"{where}: {len(boxes)} box tensors for a batch of {batch} BEV maps")
    for i, b in enumerate(boxes):
        check_box_tensor(where, b, f"gt_boxes[{i}]")
    return boxes


def check_map(where: str, label: str, x: torch.Tensor, grid: BEVGrid) -> None:
    """A (B, C, H, W) map on ``grid``, else an error naming the loss and the map."""
    if x.dim() != 4 or tuple(x.shape[-2:]) != grid.shape:
        raise ValueError(f"{where}: {label} is {tuple(x.shape)}; expected (B, C, H, W) with (H, W) = {grid.shape}, "
                         f"the grid of bev_range/cell_size/stride")


def zero_with_graph(x: torch.Tensor) -> torch.Tensor:
    """0 that is still connected to ``x`` (gradient 0), even where x holds inf or NaN."""
    return x.float().flatten()[:0].sum()


class BoxKeypointLoss(nn.Module):
    """Base of the feature and relation losses: the grid and the keypoint features of both maps."""

    def __init__(self, bev_range: Sequence[float] = NUSCENES_BEV_RANGE, cell_size: float | Sequence[float] = 0.075,
                 stride: int = 8, pseudo_score: float = 0.3, pseudo_nms_radius: float = 1.0) -> None:
        super().__init__()
        self.grid = BEVGrid.build(bev_range, cell_size, stride)
        self.pseudo_score, self.pseudo_nms_radius = check_pseudo(type(self).__name__, pseudo_score, pseudo_nms_radius)
        self.last_dropped_keypoints = torch.zeros((), dtype=torch.long)
        self.last_num_boxes = 0

    def _check_pair(self, student: torch.Tensor, teacher: torch.Tensor, same_channels: bool) -> None:
        name = type(self).__name__
        check_map(name, "student", student, self.grid)
        check_map(name, "teacher", teacher, self.grid)
        differ = student.shape != teacher.shape if same_channels else \
            (student.shape[0], *student.shape[2:]) != (teacher.shape[0], *teacher.shape[2:])
        if differ:
            hint = "; give the loss term a connector (e.g. dict(type='ConvConnector', ...))" if same_channels else ""
            raise ValueError(f"{name}: student BEV map {tuple(student.shape)} and teacher BEV map "
                             f"{tuple(teacher.shape)} differ{hint}")

    def _sample(self, student: torch.Tensor, teacher: torch.Tensor, gt_boxes: object, labelled: object = None,
                teacher_heatmap: object = None, teacher_regression: object = None):
        """Keypoint features (B, M, 9, C) of both maps, M = most boxes in a sample, and ``valid``
        (B, M, 9): a real box's keypoint that lies on the map; None when there is no box at all. An
        unlabelled scene (``labelled`` False) takes the teacher's detections as its boxes."""
        batch = student.shape[0]
        boxes = check_boxes(type(self).__name__, gt_boxes, batch)
        boxes = keypoint_boxes(type(self).__name__, boxes, labelled, teacher_heatmap, teacher_regression, self.grid,
                               self.pseudo_score, self.pseudo_nms_radius)
        most = max((len(b) for b in boxes), default=0)
        self.last_num_boxes = sum(len(b) for b in boxes)
        if most == 0:
            self.last_dropped_keypoints = torch.zeros((), dtype=torch.long, device=student.device)
            return None
        points = student.new_zeros(batch, most, 9, 2, dtype=torch.float32)
        real = torch.zeros(batch, most, 9, dtype=torch.bool, device=student.device)
        for i, b in enumerate(boxes):
            if len(b):
                points[i, :len(b)] = grid_coords(box_keypoints(b.detach().to(student.device, torch.float32)), self.grid)
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
