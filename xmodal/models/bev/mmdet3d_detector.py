"""An mmdet3d detector as an xmodal BEV model (the optional ``[det3d]`` bridge, docs/bev.md).

``MMDet3DDetector`` builds a LiDAR detector from an mmdet3d model config (PointPillars, CenterPoint-
pillar, ...) and makes it speak xmodal's detection batch (``points``, ``gt_boxes``, ``gt_labels``
from :func:`xmodal.data.detection.detection_collate`), so it can be a Distiller's teacher or student:

* ``mode="tensor"``: ``{name: feature}`` for every ``features`` entry, captured with a forward hook on
  the module at that path (``pts_middle_encoder`` is the scattered pillar BEV map, ``pts_neck`` the
  neck's BEV map), plus ``heatmap`` (classes concatenated over the tasks, logits) when the detector
  has a CenterPoint head. In training the tensor pass also computes mmdet3d's own losses, which
  ``task_loss`` returns, so the student runs once per step.
* ``mode="loss"``: mmdet3d's losses; ``mode="predict"``: records for :class:`NuScenesMetric`.

Boxes: xmodal's ``[x, y, z, dx, dy, dz, yaw, vx, vy]`` (gravity centre) become mmdet3d's
``LiDARInstance3DBoxes`` (bottom centre) and back. mmdet3d and mmcv are imported only when the model is
built; install them with ``tools/install_det3d.sh``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

import torch

from xmodal.models.base import TaskModel, labelled_mask
from xmodal.models.bev.detector import box_record
from xmodal.registry import MODELS

DEFAULT_FEATURES = {"bev_low": "pts_middle_encoder", "bev_high": "pts_neck"}


def _import_mmdet3d():
    try:
        import mmdet3d  # noqa: F401
        from mmdet3d.utils import register_all_modules
    except ImportError as err:
        raise ModuleNotFoundError(f"MMDet3DDetector needs mmdet3d (and mmcv with its ops): install them with "
                                  f"`bash tools/install_det3d.sh` ({err})") from None
    register_all_modules(init_default_scope=False)


def _first_tensor(output, path: str) -> torch.Tensor:
    while isinstance(output, (list, tuple)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"MMDet3DDetector: module {path!r} returned {type(output).__name__}, not a tensor")
    return output


@MODELS.register_module()
class MMDet3DDetector(TaskModel):
    """Args:
        detector: an mmdet3d model config dict (``type="CenterPoint"``, ...), or the path of an mmdet3d
            config file whose ``model`` is used.
        class_names: class names in label order (nuScenes names for :class:`NuScenesMetric`).
        features: output name -> module path inside the mmdet3d model, captured in tensor mode.
        checkpoint: optional weights (xmodal's trusted loader; mmdet3d checkpoints keep their keys).

    ``data_preprocessor`` is xmodal's (the batch stays a dict); voxelization is the mmdet3d model's
    own ``data_preprocessor``, run inside.
    """

    catalogue_input = "batch dict {'points': list of B (N_i, C) tensors, ...} (as the mmdet3d model's)"

    def __init__(self, detector: Mapping | str, class_names: Sequence[str],
                 features: Mapping[str, str] | None = None, checkpoint: str | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        _import_mmdet3d()
        from mmdet3d.registry import MODELS as MMDET3D_MODELS
        from mmengine.config import Config
        from mmengine.registry import DefaultScope

        spec = Config.fromfile(detector).model if isinstance(detector, str) else dict(detector)
        with DefaultScope.overwrite_default_scope("mmdet3d"):  # its parts name mmdet3d / mmdet types
            self.detector = MMDET3D_MODELS.build(spec)
        self.class_names = list(class_names)
        self.features = dict(DEFAULT_FEATURES if features is None else features)
        self._captured: dict[str, torch.Tensor] = {}
        self._losses: dict[str, torch.Tensor] | None = None
        modules = dict(self.detector.named_modules())
        for name, path in self.features.items():
            if path not in modules:
                close = difflib.get_close_matches(path, [p for p in modules if p], n=3)
                raise KeyError(f"MMDet3DDetector: features[{name!r}] = {path!r} is not a module of "
                               f"{type(self.detector).__name__}; close: {close}")
            modules[path].register_forward_hook(self._capture(name, path))
        self._head_output = None
        head = getattr(self.detector, "pts_bbox_head", None)
        if head is not None:
            head.register_forward_hook(self._keep_head_output)
        centerpoint = head is not None and hasattr(head, "task_heads")
        self.output_keys = (*self.features, *(("heatmap",) if centerpoint else ()))  # what loss terms can read
        if checkpoint is not None:
            from xmodal.engine.checkpoint import load_weights

            load_weights(self.detector, checkpoint, what="mmdet3d detector")

    def _keep_head_output(self, module, args, output) -> None:
        self._head_output = output

    def _capture(self, name: str, path: str):
        def hook(module, args, output):
            self._captured[name] = _first_tensor(output, path)
        return hook

    # -- batches ------------------------------------------------------------------------------------
    def _data_samples(self, batch: Mapping) -> list:
        from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
        from mmengine.structures import InstanceData

        points = batch["points"]
        boxes, labels = batch.get("gt_boxes"), batch.get("gt_labels")
        samples = []
        for i in range(len(points)):
            sample = Det3DDataSample()
            sample.set_metainfo({"box_type_3d": LiDARInstance3DBoxes, "sample_idx": i})
            if boxes is not None:
                b = boxes[i].float()
                b = torch.nan_to_num(b[:, :9]) if b.shape[1] >= 9 else b[:, :7]
                gt = InstanceData()
                gt.bboxes_3d = LiDARInstance3DBoxes(b, box_dim=b.shape[1], origin=(0.5, 0.5, 0.5))
                gt.labels_3d = labels[i].long()
                sample.gt_instances_3d = gt
            samples.append(sample)
        return samples

    def _prepare(self, batch: Mapping) -> dict:
        data = {"inputs": {"points": [p.float() for p in batch["points"]]}, "data_samples": self._data_samples(batch)}
        return self.detector.data_preprocessor(data, training=self.training)

    def _head_heatmap(self) -> torch.Tensor | None:
        """Class logits of a CenterPoint head, tasks concatenated: captured when the loss pass ran the
        head, else the head is run on the captured neck output (``bev_high``)."""
        head = getattr(self.detector, "pts_bbox_head", None)
        if head is None or not hasattr(head, "task_heads"):
            return None
        tasks = self._head_output
        if tasks is None:
            if "bev_high" not in self._captured:
                return None
            tasks = head([self._captured["bev_high"]])
        return torch.cat([task[0]["heatmap"] for task in tasks], dim=1)  # per task: [dict(heatmap=...)]

    # -- modes --------------------------------------------------------------------------------------
    def _tensor(self, batch: Mapping) -> dict[str, torch.Tensor]:
        self._captured, self._head_output = {}, None
        data = self._prepare(batch)
        if self.training and "gt_boxes" in batch:  # one pass: features (hooks) and mmdet3d's losses
            self._losses = self.detector.loss(data["inputs"], data["data_samples"])
        else:
            metas = [s.metainfo for s in data["data_samples"]]
            self.detector.extract_feat(data["inputs"], metas)
        outputs = dict(self._captured)
        heatmap = self._head_heatmap()
        if heatmap is not None:
            outputs["heatmap"] = heatmap
        return outputs

    def extract(self, batch: Mapping) -> dict[str, torch.Tensor]:
        return self._tensor(batch)

    def task_loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping) -> dict[str, torch.Tensor]:
        """mmdet3d computes its losses over every scene of the batch inside its own forward, so scenes
        cannot be left out afterwards: a batch with unlabelled scenes is refused."""
        keep = labelled_mask(batch)
        if keep is not None and not bool(keep.all()):
            raise ValueError("MMDet3DDetector: the batch holds unlabelled scenes (labelled=False); the mmdet3d "
                             "bridge trains on labelled scenes only: use a labelled dataset for it, or xmodal's "
                             "BEVDetector for label-scarce training")
        return self.supervised_loss(outputs, batch)

    def supervised_loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping) -> dict[str, torch.Tensor]:
        if self._losses is None:
            self._tensor(batch)
        losses, self._losses = self._losses, None
        return {k: sum(v) if isinstance(v, (list, tuple)) else v for k, v in losses.items() if "loss" in k}

    def predictions(self, outputs: Mapping, batch: Mapping) -> list[dict]:
        """mmdet3d's own predict pass (``outputs`` is not needed)."""
        data = self._prepare(batch)
        results = self.detector.predict(data["inputs"], data["data_samples"])
        tokens = batch.get("sample_token")
        index = batch.get("index", torch.arange(len(results)))
        records = []
        for i, result in enumerate(results):
            pred = result.pred_instances_3d
            boxes = pred.bboxes_3d
            centres, rest = boxes.gravity_center, boxes.tensor[:, 3:]
            vel = rest[:, 4:6] if rest.shape[1] >= 6 else torch.zeros(len(rest), 2)
            rows = torch.cat([centres, rest[:, :4], vel], dim=1).tolist()
            names = [self.class_names[k] for k in pred.labels_3d.tolist()]
            pred_records = [box_record(b, n, s) for b, n, s in zip(rows, names, pred.scores_3d.tolist())]
            gt = []
            if "gt_boxes" in batch:
                gt_rows = torch.nan_to_num(batch["gt_boxes"][i].float()).tolist()
                gt = [box_record(b + [0.0] * (9 - len(b)), self.class_names[k])
                      for b, k in zip(gt_rows, batch["gt_labels"][i].tolist())]
            token = str(tokens[i]) if tokens is not None else str(int(index[i]))
            records.append({"sample_token": token, "index": int(index[i]), "pred_boxes": pred_records, "gt_boxes": gt})
        return records

    def forward(self, batch: Mapping | None = None, mode: str = "tensor", **inputs):
        if mode == "predict":  # mmdet3d's predict runs its own forward: no extract pass before it
            return self.predictions({}, {**(batch or {}), **inputs})
        self._losses = None
        return super().forward(batch, mode, **inputs)
