"""Lift-Splat camera branch (Philion & Fidler, ECCV 2020, "Lift, Splat, Shoot: Encoding Images from
Arbitrary Camera Rigs by Implicitly Unprojecting to 3D"): multi-camera images -> a (B, C, H, W) BEV canvas.

* lift: an image backbone gives features at 1/s of the image size; a 1 × 1 conv predicts, per feature
  pixel, D depth logits (softmax -> α over the depth bins d_k) and C context features c; the frustum
  feature at (pixel, d_k) is the outer product α_k · c;
* geometry: the frustum point of feature pixel (u, v) (its centre in image pixels) at depth d is
  p_cam = d · K⁻¹ [u, v, 1]ᵀ, taken to the LiDAR frame with lidar2cam⁻¹;
* splat: frustum features are summed into the BEV cell under their point ("sum pooling", one z bin
  spanning the point-cloud range's z extent); points off the grid or outside [z_min, z_max) are dropped.

Depth bins follow LSS / BEVDepth: d_k = start + k · step for k with d_k < stop. The official
UniDistill camera model (BEVDepth's LSSFPN) uses [2, 58) m in 0.5 m steps at stride 16; the default here
keeps its range with 1 m steps and a tiny conv backbone so a CPU can train it. LSS places feature pixels
at ``linspace(0, W - 1, w)``; here a feature pixel sits at the centre of the image pixels it covers,
(j + ½) · s − ½ with pixel centres at integer coordinates (the intrinsics' convention). The intrinsics
must be those of the images as given (scaled with any resize). Images in [0, 1] are normalised with the
ImageNet mean and std first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from xmodal.models.bev.grid import build_grid, grid_cells
from xmodal.registry import MODELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]


class TinyImageBackbone(nn.Module):
    """One block per width: a stride-2 conv3×3-BN-ReLU then a conv3×3-BN-ReLU; stride 2^len(widths)."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for w in widths:
            layers += _conv_bn_relu(c_in, w, stride=2) + _conv_bn_relu(w, w)
            c_in = w
        self.body = nn.Sequential(*layers)
        self.out_channels, self.stride = c_in, 2 ** len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TimmImageBackbone(nn.Module):
    """A timm backbone's feature map at one level (``features_only``); random weights or a local file."""

    def __init__(self, model_name: str = "resnet18", out_index: int = 3, checkpoint: str | None = None) -> None:
        super().__init__()
        import timm

        self.body = timm.create_model(model_name, features_only=True, out_indices=(out_index,),
                                      pretrained=bool(checkpoint),
                                      pretrained_cfg_overlay=dict(file=checkpoint) if checkpoint else None)
        self.out_channels = self.body.feature_info.channels()[-1]
        self.stride = self.body.feature_info.reduction()[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)[-1]


def check_camera_inputs(where: str, images: object, intrinsics: object, lidar2cam: object) -> None:
    """(B, N, 3, H, W) images, (B, N, 3, 3) intrinsics, (B, N, 4, 4) lidar2cam, all finite."""
    expected = {"images": (5, "(B, N_cam, 3, H, W)"), "intrinsics": (4, "(B, N_cam, 3, 3)"),
                "lidar2cam": (4, "(B, N_cam, 4, 4)")}
    values = {"images": images, "intrinsics": intrinsics, "lidar2cam": lidar2cam}
    for field, value in values.items():
        dims, text = expected[field]
        if not isinstance(value, torch.Tensor) or value.dim() != dims or not value.is_floating_point():
            got = f"{tuple(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{where}: batch field '{field}' must be a floating {text} tensor, got {got}")
    lead = images.shape[:2]
    if images.shape[2] != 3 or intrinsics.shape != (*lead, 3, 3) or lidar2cam.shape != (*lead, 4, 4):
        raise ValueError(f"{where}: images {tuple(images.shape)}, intrinsics {tuple(intrinsics.shape)} and "
                         f"lidar2cam {tuple(lidar2cam.shape)} do not agree; expected (B, N_cam, 3, H, W), "
                         f"(B, N_cam, 3, 3), (B, N_cam, 4, 4)")
    for field, value in values.items():
        bad = ~torch.isfinite(value.flatten(1)).all(1)
        if bad.any():
            raise ValueError(f"{where}: sample {int(torch.nonzero(bad)[0])}, field '{field}': holds NaN or inf")


@MODELS.register_module()
class LiftSplatCamera(nn.Module):
    """(B, N_cam, 3, H, W) images in [0, 1] + calibration -> (B, ``out_channels``, H_bev, W_bev).

    Args:
        grid: ``dict(point_cloud_range=..., cell_size=...)``, the detector's BEV grid.
        out_channels: context features C per frustum point (the canvas channels).
        depth_bins: (start, stop, step) in metres.
        image_backbone: ``"tiny"`` (:class:`TinyImageBackbone` with ``widths``) or a timm model name
            (``"resnet18"``), its ``out_index`` level, random weights unless ``checkpoint`` (a local file).
    """

    def __init__(self, grid: Mapping | None = None, out_channels: int = 64,
                 depth_bins: Sequence[float] = (2.0, 58.0, 1.0), image_backbone: str = "tiny",
                 widths: Sequence[int] = (16, 32, 64, 128), out_index: int = 3,
                 checkpoint: str | None = None) -> None:
        super().__init__()
        self.grid, self.z_range = build_grid("LiftSplatCamera", grid)
        start, stop, step = (float(v) for v in depth_bins)
        if not (start > 0 and step > 0 and stop > start):
            raise ValueError(f"LiftSplatCamera: depth_bins must be (start > 0, stop > start, step > 0), got "
                             f"{tuple(depth_bins)}")
        self.register_buffer("depths", torch.arange(start, stop, step, dtype=torch.float32), persistent=False)
        if image_backbone == "tiny":
            self.backbone = TinyImageBackbone(widths)
        else:
            self.backbone = TimmImageBackbone(image_backbone, out_index, checkpoint)
        self.out_channels = int(out_channels)
        self.num_depths = len(self.depths)
        self.depth_net = nn.Sequential(*_conv_bn_relu(self.backbone.out_channels, self.backbone.out_channels),
                                       nn.Conv2d(self.backbone.out_channels, self.num_depths + self.out_channels, 1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def frustum_points(self, intrinsics: torch.Tensor, lidar2cam: torch.Tensor, image_size: tuple[int, int],
                       feature_size: tuple[int, int]) -> torch.Tensor:
        """(B, N, 3, 3), (B, N, 4, 4) -> (B, N, D, h, w, 3) LiDAR-frame points of the frustum."""
        (img_h, img_w), (h, w) = image_size, feature_size
        dev = intrinsics.device
        # in float64: K⁻¹ and the rigid inverse of metre-scale poses lose centimetres in float32
        u = (torch.arange(w, device=dev, dtype=torch.float64) + 0.5) * (img_w / w) - 0.5
        v = (torch.arange(h, device=dev, dtype=torch.float64) + 0.5) * (img_h / h) - 0.5
        d = self.depths.to(torch.float64)
        d_, v_, u_ = torch.meshgrid(d, v, u, indexing="ij")  # (D, h, w)
        pixels = torch.stack([u_ * d_, v_ * d_, d_], dim=-1)  # homogeneous pixel · depth
        cam_to_lidar = torch.linalg.inv(lidar2cam.to(torch.float64))  # (B, N, 4, 4)
        # p_lidar = R (K⁻¹ p) + t, one (3 × 3) map per camera
        combined = cam_to_lidar[..., :3, :3] @ torch.linalg.inv(intrinsics.to(torch.float64))
        points = torch.einsum("bnij,dhwj->bndhwi", combined, pixels) + cam_to_lidar[..., None, None, None, :3, 3]
        return points.to(intrinsics.dtype)

    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor, lidar2cam: torch.Tensor) -> torch.Tensor:
        check_camera_inputs("LiftSplatCamera", images, intrinsics, lidar2cam)
        batch, cams, _, img_h, img_w = images.shape
        x = images.flatten(0, 1).to(self.mean.dtype)
        x = self.depth_net(self.backbone((x - self.mean) / self.std))  # (B·N, D + C, h, w)
        h, w = x.shape[-2:]
        depth = x[:, :self.num_depths].softmax(dim=1)
        context = x[:, self.num_depths:]
        # (B·N, D, C, h, w) -> (B, N, D, h, w, C): the outer product α_k · c at every feature pixel
        frustum = (depth[:, :, None] * context[:, None]).view(batch, cams, self.num_depths, -1, h, w)
        frustum = frustum.permute(0, 1, 2, 4, 5, 3)
        geometry = self.frustum_points(intrinsics.float(), lidar2cam.float(), (img_h, img_w), (h, w))
        col, row, inside = grid_cells(geometry[..., :2], self.grid)
        inside &= (geometry[..., 2] >= self.z_range[0]) & (geometry[..., 2] < self.z_range[1])
        height, width = self.grid.shape
        sample = torch.arange(batch, device=images.device).view(batch, 1, 1, 1, 1)
        flat = ((sample * height + row) * width + col)[inside]
        canvas = frustum.new_zeros(batch * height * width, self.out_channels)
        canvas = canvas.index_add(0, flat, frustum[inside])
        return canvas.view(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
