"""CenterPoint detection head (Yin et al., CVPR 2021, "Center-based 3D Object Detection and Tracking"):
per-class centre heatmaps and per-cell box regression on the BEV grid, its targets, loss and decoding.

Targets, per box of class k whose centre (u, v) = ((x − x0) / s, (y − y0) / s) falls in cell
(row ⌊v⌋, column ⌊u⌋): heatmap k gets exp(−(Δrow² + Δcol²) / 2σ²) over the (2r + 1)² cells around the
centre cell (max over boxes), r = max(min_radius, ⌊gaussian_radius(dx / s, dy / s, min_overlap)⌋),
σ = (2r + 1) / 6, so the centre cell holds exactly 1; the 10 regression targets at that cell are
[u − ⌊u⌋, v − ⌊v⌋, z, log dx, log dy, log dz, sin yaw, cos yaw, vx, vy].

Loss (number of objects N = boxes kept in the batch, p = σ(logit), g = heatmap target):
  heatmap:    −1/N Σ [g = 1] (1 − p)^α log p + [g < 1] (1 − g)^β p^α log(1 − p)   (CornerNet; α 2, β 4)
  regression: w_loc / (N + 1e-4) Σ_objects Σ_c code_weight_c |r̂_c − r_c|, at each object's centre cell

Facts from CenterPoint's nuScenes configs (mmdetection3d ``centerpoint_*_nus``, and UniDistill's
``center_head.py``): shared conv3×3 to 64 channels + BN + ReLU; one branch per output group (heatmap,
offset 2, height 1, size 3, rotation 2, velocity 2) of conv3×3-BN-ReLU then a conv3×3; heatmap bias
−2.19; min_overlap 0.1, min_radius 2; w_loc 0.25; code weights 1 except 0.2 for the velocities; score
threshold 0.1; circle NMS radius per task. Decoding keeps 3 × 3 max-pool peaks, the top k over all
classes and cells, then greedy circle NMS within each class. CenterPoint's circle-NMS thresholds
(4, 12, 10, 1, 0.85, 0.175 for car, truck + construction vehicle, bus + trailer, barrier, motorcycle +
bicycle, pedestrian + cone) are compared with the *squared* centre distance; here the radius is in metres
(the square roots), which suppresses exactly the same boxes. Choices: log p and log(1 − p) come from
logsigmoid (CenterPoint clamps p to [1e-4, 1 − 1e-4] instead); non-finite regression targets (nuScenes'
NaN velocity of static objects) get weight 0; decoded log sizes are clamped to [−10, 10].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.models.bev.grid import BEVGrid, build_grid, gaussian_radius, grid_cells
from xmodal.registry import MODELS

REGRESSION_CHANNELS = 10  # offset x, y; z; log dx, dy, dz; sin, cos yaw; vx, vy
# (name, channels) of the regression branches, in the order of the regression map
REGRESSION_GROUPS = (("offset", 2), ("height", 1), ("size", 3), ("rotation", 2), ("velocity", 2))
CODE_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)
HEATMAP_INIT_BIAS = -2.19  # σ(−2.19) ≈ 0.1: every cell starts as a confident background
# metres; squared they are CenterPoint's per-task thresholds
CIRCLE_NMS_RADIUS = {"car": 2.0, "truck": math.sqrt(12.0), "construction_vehicle": math.sqrt(12.0),
                     "bus": math.sqrt(10.0), "trailer": math.sqrt(10.0), "barrier": 1.0,
                     "motorcycle": math.sqrt(0.85), "bicycle": math.sqrt(0.85), "pedestrian": math.sqrt(0.175),
                     "traffic_cone": math.sqrt(0.175)}
_LOG_SIZE_LIMIT = 10.0
BOX_COLUMNS = 9


def valid_boxes(boxes: torch.Tensor, grid: BEVGrid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(M, 9) boxes -> (column, row) of their centre cells and ``valid``: finite centre, size and yaw,
    sizes > 0, centre on the grid (the others get no target and are counted as dropped)."""
    col, row, inside = grid_cells(boxes[:, :2], grid)
    finite = torch.isfinite(boxes[:, :7]).all(1) & (boxes[:, 3:6] > 0).all(1)
    return col, row, inside & finite


def encode_boxes(boxes: torch.Tensor, grid: BEVGrid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(M, 9) boxes -> (column, row) of the centre cells and the (M, 10) regression targets (rows of
    invalid boxes, see :func:`valid_boxes`, are meaningless)."""
    b = boxes.float()
    col, row, _ = valid_boxes(b, grid)
    u = (b[:, 0] - grid.origin[0]) / grid.step[0]
    v = (b[:, 1] - grid.origin[1]) / grid.step[1]
    target = torch.stack([u - col, v - row, b[:, 2], *torch.log(b[:, 3:6].clamp_min(1e-6)).unbind(1),
                          torch.sin(b[:, 6]), torch.cos(b[:, 6]), b[:, 7], b[:, 8]], dim=1)
    return col, row, target


def decode_boxes(regression: torch.Tensor, col: torch.Tensor, row: torch.Tensor, grid: BEVGrid) -> torch.Tensor:
    """(M, 10) regression values read at cells (column, row) -> (M, 9) boxes; inverse of :func:`encode_boxes`."""
    r = regression.float()
    x = (col.to(r.dtype) + r[:, 0]) * grid.step[0] + grid.origin[0]
    y = (row.to(r.dtype) + r[:, 1]) * grid.step[1] + grid.origin[1]
    size = torch.exp(r[:, 3:6].clamp(-_LOG_SIZE_LIMIT, _LOG_SIZE_LIMIT))
    yaw = torch.atan2(r[:, 6], r[:, 7])
    return torch.cat([x[:, None], y[:, None], r[:, 2:3], size, yaw[:, None], r[:, 8:10]], dim=1)


@torch.no_grad()
def decode_detections(heatmap: torch.Tensor, regression: torch.Tensor, grid: BEVGrid, top_k: int,
                      score_threshold: float, nms_radius: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Per sample ``boxes`` (n, 9), ``scores`` (n,), ``labels`` (n,): heatmap peaks (3×3 max), the top
    ``top_k``, scores above ``score_threshold``, circle NMS with ``nms_radius`` (one radius per class)."""
    heat = torch.sigmoid(heatmap.detach().float())
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    batch, classes, height, width = heat.shape
    k = min(top_k, classes * height * width)
    scores, index = peaks.flatten(1).topk(k, dim=1)
    labels = torch.div(index, height * width, rounding_mode="floor")
    cell = index % (height * width)
    rows, cols = torch.div(cell, width, rounding_mode="floor"), cell % width
    flat_reg = regression.detach().float().flatten(2)  # (B, 10, H·W)
    out = []
    for i in range(batch):
        reg = flat_reg[i][:, cell[i]].T  # (k, 10)
        boxes = decode_boxes(reg, cols[i], rows[i], grid)
        ok = (scores[i] > score_threshold) & torch.isfinite(boxes[:, :7]).all(1)
        b, s, lab = boxes[ok], scores[i][ok], labels[i][ok]
        keep = circle_nms(b[:, :2], s, lab, nms_radius.to(b.device))
        out.append({"boxes": b[keep], "scores": s[keep], "labels": lab[keep]})
    return out


def draw_heatmap(boxes: torch.Tensor, labels: torch.Tensor, num_classes: int, grid: BEVGrid,
                 min_overlap: float = 0.1, min_radius: int = 2, chunk: int = 64) -> torch.Tensor:
    """(num_classes, H, W) Gaussian centre heatmap of the valid boxes (``labels`` already checked)."""
    height, width = grid.shape
    heat = torch.zeros(num_classes, height * width, device=boxes.device)
    b = boxes.float()
    col, row, ok = valid_boxes(b, grid)
    b, col, row, labels = b[ok], col[ok].float(), row[ok].float(), labels[ok]
    if not len(b):
        return heat.view(num_classes, height, width)
    size = b[:, 3:5] / b.new_tensor(grid.step)  # (dx, dy) in cells
    radius = torch.floor(gaussian_radius(size[:, 0], size[:, 1], min_overlap)).clamp_min(min_radius)
    rows = torch.arange(height, device=b.device, dtype=torch.float32)
    cols = torch.arange(width, device=b.device, dtype=torch.float32)
    for start in range(0, len(b), chunk):  # chunks bound the (boxes, H, W) intermediate
        r = radius[start:start + chunk, None]
        two_sigma_sq = 2 * ((2 * r + 1) / 6) ** 2
        d_row = rows[None] - row[start:start + chunk, None]
        d_col = cols[None] - col[start:start + chunk, None]
        g_row = torch.exp(-d_row**2 / two_sigma_sq) * (d_row.abs() <= r)
        g_col = torch.exp(-d_col**2 / two_sigma_sq) * (d_col.abs() <= r)
        gauss = (g_row[:, :, None] * g_col[:, None, :]).flatten(1)
        heat.scatter_reduce_(0, labels[start:start + chunk, None].expand_as(gauss), gauss, "amax")
    return heat.view(num_classes, height, width)


def gaussian_focal_loss(logits: torch.Tensor, target: torch.Tensor, num_objects: int | torch.Tensor,
                        alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CornerNet's penalty-reduced focal loss over all cells, summed and divided by max(num_objects, 1)."""
    x, g = logits.float(), target.float()
    positive = g == 1
    log_p, log_not_p = F.logsigmoid(x), F.logsigmoid(-x)
    pos = torch.exp(alpha * log_not_p) * log_p  # (1 − p)^α log p
    neg = torch.pow(1 - g, beta) * torch.exp(alpha * log_p) * log_not_p  # (1 − g)^β p^α log(1 − p)
    total = torch.where(positive, pos, neg).sum()
    return -total / max(float(num_objects), 1.0)


def circle_nms(centres: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
               radius: torch.Tensor) -> torch.Tensor:
    """Greedy NMS by centre distance within each class: from the highest score down, a box suppresses the
    lower-scored boxes of its class whose centre lies within ``radius[class]`` metres (inclusive).
    (N, 2), (N,), (N,), (num_classes,) -> kept indices, highest score first."""
    if not len(scores):
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    order = torch.argsort(scores, descending=True, stable=True)
    c, lab = centres[order].float(), labels[order]
    dist_sq = ((c[:, None] - c[None]) ** 2).sum(-1)
    limit = radius.to(c)[lab] ** 2
    close = ((dist_sq <= limit[:, None]) & (lab[:, None] == lab[None])).cpu()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    later = torch.ones_like(close).triu(1)
    keep = []
    for i in range(len(order)):  # over at most top_k detections, not over cells
        if not suppressed[i]:
            keep.append(i)
            suppressed |= close[i] & later[i]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def _branch(in_channels: int, head_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, head_channels, 3, padding=1), nn.BatchNorm2d(head_channels),
                         nn.ReLU(True), nn.Conv2d(head_channels, out_channels, 3, padding=1))


@MODELS.register_module()
class CenterPointHead(nn.Module):
    """(B, C, H, W) BEV features -> ``heatmap`` (B, K, H, W) logits and ``regression`` (B, 10, H, W).

    Args:
        grid: ``dict(point_cloud_range=..., cell_size=...)``, the grid of the input map.
        class_names: the K classes, in label order.
        in_channels, share_channels, head_channels: input, shared-conv and branch widths.
        min_overlap, min_radius: Gaussian target radius rule.
        loc_weight, code_weights: regression loss weight and per-channel weights.
        alpha, beta: focal-loss exponents.
        top_k, score_threshold: decoding.
        nms_radius: circle-NMS radius in metres, one number for every class or ``{class: radius}``;
            None takes :data:`CIRCLE_NMS_RADIUS` (nuScenes classes only); 0 keeps every peak.
    """

    def __init__(self, grid: Mapping | None = None, class_names: Sequence[str] = tuple(CIRCLE_NMS_RADIUS),
                 in_channels: int = 192, share_channels: int = 64, head_channels: int = 64,
                 min_overlap: float = 0.1, min_radius: int = 2, loc_weight: float = 0.25,
                 code_weights: Sequence[float] = CODE_WEIGHTS, alpha: float = 2.0, beta: float = 4.0,
                 top_k: int = 100, score_threshold: float = 0.1,
                 nms_radius: float | Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.grid, _ = build_grid("CenterPointHead", grid)
        self.class_names = tuple(class_names)
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"CenterPointHead: class_names must be distinct and non-empty, got {class_names}")
        if len(code_weights) != REGRESSION_CHANNELS:
            raise ValueError(f"CenterPointHead: code_weights needs {REGRESSION_CHANNELS} values, got "
                             f"{len(code_weights)}")
        gaussian_radius(1.0, 1.0, min_overlap)  # validates min_overlap
        if min_radius < 0 or top_k < 1 or not 0 <= score_threshold < 1:
            raise ValueError(f"CenterPointHead: need min_radius >= 0, top_k >= 1, 0 <= score_threshold < 1; got "
                             f"{min_radius}, {top_k}, {score_threshold}")
        self.num_classes = len(self.class_names)
        self.min_overlap, self.min_radius = float(min_overlap), int(min_radius)
        self.loc_weight, self.alpha, self.beta = float(loc_weight), float(alpha), float(beta)
        self.top_k, self.score_threshold = int(top_k), float(score_threshold)
        self.register_buffer("code_weights", torch.tensor([float(w) for w in code_weights]), persistent=False)
        self.register_buffer("nms_radius", self._radii(nms_radius), persistent=False)

        self.shared = nn.Sequential(nn.Conv2d(in_channels, share_channels, 3, padding=1),
                                    nn.BatchNorm2d(share_channels), nn.ReLU(True))
        self.heatmap = _branch(share_channels, head_channels, self.num_classes)
        nn.init.constant_(self.heatmap[-1].bias, HEATMAP_INIT_BIAS)
        self.regression = nn.ModuleDict({name: _branch(share_channels, head_channels, c)
                                         for name, c in REGRESSION_GROUPS})
        for m in self.regression.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.last_dropped_boxes = 0  # boxes of the last loss call with no target (off the grid or degenerate)

    def _radii(self, nms_radius: float | Mapping[str, float] | None) -> torch.Tensor:
        if isinstance(nms_radius, (int, float)):
            table = dict.fromkeys(self.class_names, float(nms_radius))
        else:
            table = dict(CIRCLE_NMS_RADIUS if nms_radius is None else nms_radius)
        missing = [c for c in self.class_names if c not in table]
        if missing:
            raise ValueError(f"CenterPointHead: no circle-NMS radius for classes {missing}; pass nms_radius=<metres> "
                             f"or {{class: metres}}")
        radii = torch.tensor([float(table[c]) for c in self.class_names])
        if (radii < 0).any():
            raise ValueError(f"CenterPointHead: nms_radius must be >= 0, got {table}")
        return radii

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.shared(x)
        regression = torch.cat([self.regression[name](x) for name, _ in REGRESSION_GROUPS], dim=1)
        return {"heatmap": self.heatmap(x), "regression": regression}

    def targets(self, gt_boxes: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor]) -> dict:
        """Heatmaps (B, K, H, W) and, per kept object, its sample, cell and 10 regression targets."""
        heatmaps, samples, cols, rows, regs = [], [], [], [], []
        dropped = 0
        for i, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels)):
            heatmaps.append(draw_heatmap(boxes, labels, self.num_classes, self.grid, self.min_overlap,
                                         self.min_radius))
            col, row, reg = encode_boxes(boxes, self.grid)
            ok = valid_boxes(boxes.float(), self.grid)[2]
            dropped += int((~ok).sum())
            samples.append(torch.full((int(ok.sum()),), i, dtype=torch.long, device=boxes.device))
            cols.append(col[ok])
            rows.append(row[ok])
            regs.append(reg[ok])
        self.last_dropped_boxes = dropped
        return {"heatmap": torch.stack(heatmaps), "sample": torch.cat(samples), "col": torch.cat(cols),
                "row": torch.cat(rows), "regression": torch.cat(regs)}

    def loss(self, heatmap: torch.Tensor, regression: torch.Tensor, gt_boxes: Sequence[torch.Tensor],
             gt_labels: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``loss_heatmap`` (focal) and ``loss_bbox`` (weighted L1); boxes and labels already checked."""
        t = self.targets([b.to(heatmap.device) for b in gt_boxes], [lab.to(heatmap.device) for lab in gt_labels])
        num = len(t["sample"])
        loss_heatmap = gaussian_focal_loss(heatmap, t["heatmap"], num, self.alpha, self.beta)
        pred = regression.float()[t["sample"], :, t["row"], t["col"]]  # (N, 10)
        target = t["regression"]
        finite = torch.isfinite(target)
        weights = self.code_weights[None] * finite
        l1 = (pred - torch.where(finite, target, 0.0)).abs() * weights
        loss_bbox = self.loc_weight * l1.sum() / (num + 1e-4)
        return {"loss_heatmap": loss_heatmap, "loss_bbox": loss_bbox}

    def decode(self, heatmap: torch.Tensor, regression: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per sample ``boxes`` (n, 9), ``scores`` (n,), ``labels`` (n,) after peaks, top-k, threshold, NMS."""
        return decode_detections(heatmap, regression, self.grid, self.top_k, self.score_threshold, self.nms_radius)
