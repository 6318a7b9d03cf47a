"""UniDistill's response loss: Gaussian-masked L1 between the detection heads' heatmaps and regressions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xmodal.distill.losses.checks import check_temperature
from xmodal.distill.unidistill.keypoints import check_boxes, check_map, zero_with_graph
from xmodal.distill.unidistill.pseudo_boxes import check_pseudo, keypoint_boxes
from xmodal.models.bev.grid import NUSCENES_BEV_RANGE, BEVGrid, gaussian_mask, gaussian_radius
from xmodal.registry import MODELS


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
                 reg_weight: float = 1.0, pseudo_score: float = 0.3, pseudo_nms_radius: float = 1.0) -> None:
        super().__init__()
        self.grid = BEVGrid.build(bev_range, cell_size, stride)
        self.pseudo_score, self.pseudo_nms_radius = check_pseudo(type(self).__name__, pseudo_score, pseudo_nms_radius)
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
                teacher_regression: torch.Tensor | Sequence[torch.Tensor] | None = None,
                labelled: object = None) -> torch.Tensor:
        name = type(self).__name__
        hs = _channels(name, "student_heatmap", student_heatmap)
        ht = _channels(name, "teacher_heatmap", teacher_heatmap).detach()
        check_map(name, "student heatmap", hs, self.grid)
        check_map(name, "teacher heatmap", ht, self.grid)
        if hs.shape[0] != ht.shape[0]:
            raise ValueError(f"{name}: student heatmap {tuple(hs.shape)} and teacher heatmap {tuple(ht.shape)} "
                             f"have different batch sizes")
        if (student_regression is None) != (teacher_regression is None):
            raise ValueError(f"{name}: give both student_regression and teacher_regression, or neither")
        boxes = check_boxes(name, gt_boxes, hs.shape[0])
        if hs.shape[0] == 0:
            self.last_terms, self.last_skipped_boxes = {}, 0
            return zero_with_graph(hs)
        teacher_reg = None if teacher_regression is None else _channels(name, "teacher_regression", teacher_regression)
        boxes = keypoint_boxes(name, boxes, labelled, ht, teacher_reg, self.grid, self.pseudo_score,
                               self.pseudo_nms_radius)
        masks, skipped = [], 0
        for b in boxes:
            mask, n = gaussian_mask(b.to(hs.device), self.grid, self.min_overlap, self.min_radius)
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
