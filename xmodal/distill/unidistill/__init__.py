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

from xmodal.distill.unidistill.feature import UniDistillFeatureLoss
from xmodal.distill.unidistill.relation import UniDistillRelationLoss
from xmodal.distill.unidistill.response import UniDistillResponseLoss
from xmodal.distill.unidistill.terms import UNIDISTILL_WEIGHTS, unidistill_terms

__all__ = [
    "UNIDISTILL_WEIGHTS",
    "UniDistillFeatureLoss",
    "UniDistillRelationLoss",
    "UniDistillResponseLoss",
    "unidistill_terms",
]
