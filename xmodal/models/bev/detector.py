"""BEVDetector: a CenterPoint-style BEV 3-D detector for LiDAR, camera or both, on one BEV grid.

LiDAR: PointPillars pillars scattered to the grid (:class:`PillarFeatureNet`); camera: Lift-Splat
(:class:`LiftSplatCamera`); fusion: both, concatenated and convolved (:class:`ConvBEVFuser`). The first BEV
map is ``bev_low``; a SECOND-FPN backbone (:class:`SECONDFPNBackbone`) turns it into ``bev_high`` on the same
grid, which the CenterPoint head (:class:`CenterPointHead`) reads. These are the maps UniDistill's losses
compare (Zhou et al., CVPR 2023): with ``point_cloud_range`` and ``cell_size`` of the detector's grid and
``stride=1`` the losses read them at the right cells, and detectors of different modalities built on one
grid share every map's (H, W) (and, with the defaults, ``bev_low``'s 64 channels).

Batch (the BEV detection contract): ``points`` (list of (N_i, 5)), ``images`` (B, N_cam, 3, H, W) in [0, 1],
``intrinsics`` (B, N_cam, 3, 3), ``lidar2cam`` (B, N_cam, 4, 4), ``gt_boxes`` (list of (M_i, 9)
[x, y, z, dx, dy, dz, yaw, vx, vy], LiDAR frame), ``gt_labels`` (list of (M_i,) class ids),
``sample_token`` (list of str). A model reads only what its modality needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from xmodal.models.base import TaskModel
from xmodal.models.bev.centerpoint_head import BOX_COLUMNS, CIRCLE_NMS_RADIUS
from xmodal.models.bev.grid import build_grid
from xmodal.registry import MODELS

MODALITIES = ("lidar", "camera", "fusion")
NUSCENES_CLASSES = tuple(CIRCLE_NMS_RADIUS)


def _part(where: str, slot: str, cfg: Mapping | None, default_type: str, **filled) -> torch.nn.Module:
    cfg = dict(cfg or {})
    clash = sorted(set(cfg) & set(filled))
    if clash:
        raise ValueError(f"{where}: {slot} config must not set {clash}; the detector fills them in (give grid and "
                         f"class_names once, at the detector level)")
    cfg.setdefault("type", default_type)
    return MODELS.build({**cfg, **filled})


def box_record(box: Sequence[float], name: str, score: float | None = None, attribute: str = "",
               lidar2ego: Sequence[Sequence[float]] | None = None) -> dict:
    """A [x, y, z, dx, dy, dz, yaw, vx, vy] box in nuScenes submission format (size [w, l, h] = [dy, dx, dz],
    yaw about +z as the quaternion [cos(yaw/2), 0, 0, sin(yaw/2)]). ``ego_translation`` (read by the metric's
    class-range filter, x and y only) is the centre in the ego frame when ``lidar2ego`` is known, else the
    LiDAR-frame centre (the LiDAR sits within about a metre of the ego origin)."""
    x, y, z, dx, dy, dz, yaw, vx, vy = (float(v) for v in box[:BOX_COLUMNS])
    ego = [x, y, z]
    if lidar2ego is not None:
        ego = [sum(r[k] * v for k, v in enumerate((x, y, z))) + r[3] for r in lidar2ego[:3]]
    record = {"translation": [x, y, z], "size": [dy, dx, dz],
              "rotation": [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)], "velocity": [vx, vy],
              "detection_name": name, "attribute_name": attribute, "ego_translation": ego}
    if score is not None:
        record["detection_score"] = float(score)
    return record


@MODELS.register_module()
class BEVDetector(TaskModel):
    """Batch dict in, ``{"bev_low", "bev_high", "heatmap", "regression"}`` out (``mode="tensor"``).

    Args:
        modality: ``"lidar"``, ``"camera"`` or ``"fusion"``.
        class_names: detection classes in label order (nuScenes names for :class:`NuScenesMetric`).
        grid: ``dict(point_cloud_range=(x0, y0, z0, x1, y1, z1), cell_size=c)``; nuScenes default
            [-54, 54] m in x and y, z in [-5, 3], 0.6 m cells (180 × 180).
        pillar, camera, fusion, backbone, head: configs of the parts (``type`` optional; the detector fills
            in ``grid``, ``class_names`` and input channels).
    """

    catalogue_input = ("batch dict {'points': list of B (N_i, 5) tensors} (lidar), {'images': (B, N_cam, 3, H, W), "
                       "'intrinsics', 'lidar2cam'} (camera), or both (fusion)")

    output_keys = ("bev_low", "bev_high", "heatmap", "regression")
    task_loss_names = ("loss_heatmap", "loss_bbox")

    def __init__(self, modality: str = "lidar", class_names: Sequence[str] = NUSCENES_CLASSES,
                 grid: Mapping | None = None, pillar: Mapping | None = None, camera: Mapping | None = None,
                 fusion: Mapping | None = None, backbone: Mapping | None = None, head: Mapping | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if modality not in MODALITIES:
            raise ValueError(f"BEVDetector: modality={modality!r}; expected one of {MODALITIES}")
        where = "BEVDetector"
        self.modality = modality
        self.class_names = tuple(class_names)
        self.grid_cfg = dict(grid or {})
        self.grid, _ = build_grid(where, self.grid_cfg)
        self.pillar = self.camera = self.fusion = None
        if modality in ("lidar", "fusion"):
            self.pillar = _part(where, "pillar", pillar, "PillarFeatureNet", grid=self.grid_cfg)
        if modality in ("camera", "fusion"):
            self.camera = _part(where, "camera", camera, "LiftSplatCamera", grid=self.grid_cfg)
        if modality == "fusion":
            self.fusion = _part(where, "fusion", fusion, "ConvBEVFuser",
                                in_channels=(self.pillar.out_channels, self.camera.out_channels))
            low_channels = self.fusion.out_channels
        else:
            low_channels = (self.pillar if self.pillar is not None else self.camera).out_channels
        self.backbone = _part(where, "backbone", backbone, "SECONDFPNBackbone", in_channels=low_channels)
        self.head = _part(where, "head", head, "CenterPointHead", grid=self.grid_cfg, class_names=self.class_names,
                          in_channels=self.backbone.out_channels)

    def extract(self, batch: Mapping) -> dict[str, torch.Tensor]:
        needed = {"lidar": ["points"], "camera": ["images", "intrinsics", "lidar2cam"]}
        wanted = needed["lidar"] * (self.pillar is not None) + needed["camera"] * (self.camera is not None)
        missing = [k for k in wanted if k not in batch]
        if missing:
            raise KeyError(f"BEVDetector ({self.modality}): the batch has no {missing}; it has {sorted(batch)}")
        lidar = self.pillar(batch["points"]) if self.pillar is not None else None
        camera = self.camera(batch["images"], batch["intrinsics"], batch["lidar2cam"]) \
            if self.camera is not None else None
        if self.fusion is not None:
            if lidar.shape[0] != camera.shape[0]:
                raise ValueError(f"BEVDetector: {lidar.shape[0]} point clouds but {camera.shape[0]} image sets")
            low = self.fusion(lidar, camera)
        else:
            low = lidar if lidar is not None else camera
        high = self.backbone(low)
        return {"bev_low": low, "bev_high": high, **self.head(high)}

    def _ground_truth(self, batch: Mapping, size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        for field in ("gt_boxes", "gt_labels"):
            value = batch.get(field)
            if isinstance(value, torch.Tensor) or not isinstance(value, Sequence) or len(value) != size:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else \
                    (f"{len(value)} entries" if isinstance(value, Sequence) else type(value).__name__)
                raise ValueError(f"BEVDetector: batch field '{field}' must be a list with one tensor per sample "
                                 f"({size}), got {got}")
        boxes, labels = list(batch["gt_boxes"]), list(batch["gt_labels"])
        infos = batch.get("info")
        for i, (b, lab) in enumerate(zip(boxes, labels)):
            if not isinstance(b, torch.Tensor) or b.dim() != 2 or b.shape[1] != BOX_COLUMNS \
                    or not b.is_floating_point():
                got = f"{tuple(b.shape)} {b.dtype}" if isinstance(b, torch.Tensor) else type(b).__name__
                raise ValueError(f"BEVDetector: sample {i}, field 'gt_boxes': expected a floating (M, 9) tensor "
                                 f"[x, y, z, dx, dy, dz, yaw, vx, vy], got {got}")
            if not isinstance(lab, torch.Tensor) or lab.shape != (len(b),) or lab.is_floating_point():
                got = f"{tuple(lab.shape)} {lab.dtype}" if isinstance(lab, torch.Tensor) else type(lab).__name__
                raise ValueError(f"BEVDetector: sample {i}, field 'gt_labels': expected an integer ({len(b)},) "
                                 f"tensor of class ids, got {got}")
            if len(lab) and (int(lab.min()) < 0 or int(lab.max()) >= len(self.class_names)):
                raise ValueError(f"BEVDetector: sample {i}, field 'gt_labels': class ids must lie in "
                                 f"[0, {len(self.class_names) - 1}], got min {int(lab.min())}, max {int(lab.max())}")
            missing = (infos[i] or {}).get("velocity_missing") if isinstance(infos, Sequence) else None
            if missing:  # stored as 0 on disk; NaN gets no velocity target and no velocity error
                boxes[i] = b.clone()
                boxes[i][torch.as_tensor(missing, dtype=torch.long), 7:9] = math.nan
        return boxes, [lab.long() for lab in labels]

    def supervised_loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping) -> dict[str, torch.Tensor]:
        """CenterPoint: ``loss_heatmap`` (Gaussian focal) + ``loss_bbox`` (L1 at the GT centres), on the
        labelled scenes (an unlabelled scene has ``labelled`` false and no boxes to learn from)."""
        boxes, labels = self._ground_truth(batch, outputs["heatmap"].shape[0])
        return self.head.loss(outputs["heatmap"], outputs["regression"], boxes, labels)

    def predictions(self, outputs: Mapping[str, torch.Tensor], batch: Mapping) -> list[dict]:
        """One record per sample: ``sample_token``, ``pred_boxes`` and ``gt_boxes`` in the nuScenes submission
        format (for :class:`NuScenesMetric`). The dataset's optional ``info`` (``with_info=True``) adds, where
        present, ``num_pts`` and ``attribute_name`` to the GT boxes and ego-frame ``ego_translation`` from
        ``lidar2ego``; without ``gt_boxes`` / ``gt_labels`` (unlabelled data) ``gt_boxes`` is empty."""
        decoded = self.head.decode(outputs["heatmap"], outputs["regression"])
        size = len(decoded)
        if "gt_boxes" in batch or "gt_labels" in batch:
            boxes, labels = self._ground_truth(batch, size)
        else:  # unlabelled data (a test split): predictions only
            boxes, labels = [torch.zeros(0, BOX_COLUMNS)] * size, [torch.zeros(0, dtype=torch.long)] * size
        tokens = batch.get("sample_token")
        index = batch.get("index", torch.arange(size))
        infos = batch.get("info") if isinstance(batch.get("info"), Sequence) else [None] * size
        records = []
        for i, det in enumerate(decoded):
            info = infos[i] or {}
            pose = info.get("lidar2ego")
            names = [self.class_names[k] for k in det["labels"].tolist()]
            pred = [box_record(b, n, s, lidar2ego=pose)
                    for b, n, s in zip(det["boxes"].tolist(), names, det["scores"].tolist())]
            attributes = info.get("attributes") or [""] * len(labels[i])
            gt = [box_record(b, self.class_names[k], attribute=a, lidar2ego=pose)
                  for b, k, a in zip(boxes[i].tolist(), labels[i].tolist(), attributes)]
            for record, n in zip(gt, info.get("num_points") or []):
                record["num_pts"] = int(n)
            token = str(tokens[i]) if tokens is not None else str(int(index[i]))
            records.append({"sample_token": token, "index": int(index[i]), "pred_boxes": pred, "gt_boxes": gt})
        return records
