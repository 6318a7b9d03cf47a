"""Semantic-segmentation metrics from a confusion matrix: mIoU, pixel accuracy, mean class accuracy.

Each sample is reduced to a C × C confusion matrix in ``process()`` (C² integers instead of H × W
predictions), and the matrices are summed in ``compute_metrics()``. Pixels whose label is
``ignore_index`` never count. What happens to a pixel *predicted* as the ignored class depends on
``void_predictions``:

* ``"drop"`` (default, MST-Distill's NYU numbers): the pixel is left out, as scikit-learn's
  ``confusion_matrix(labels=<valid classes>)`` in the official ``metrics()`` does;
* ``"count"``: the pixel counts as a miss of its true class (a false negative, as in mmseg).

IoU of a class = TP / (TP + FP + FN) over the kept pixels; classes with an empty union (neither in
the labels nor in the predictions) are left out of the mean, as the official nan-mean does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from xmodal.registry import METRICS

_ITEMS = ("mIoU", "pixel_accuracy", "mean_accuracy", "cross_entropy")


def pixel_confusion_matrix(pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor,
                           num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class, over all pixels (labels outside [0, C) are skipped,
    so an ``ignore_index`` such as 255 simply drops out)."""
    pred = torch.as_tensor(pred).reshape(-1).long()
    label = torch.as_tensor(label).reshape(-1).long()
    if pred.shape != label.shape:
        raise ValueError(f"pixel_confusion_matrix: {pred.numel()} predicted pixels for {label.numel()} labels")
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"pixel_confusion_matrix: predictions must lie in [0, {num_classes - 1}]")
    keep = (label >= 0) & (label < num_classes)
    counts = torch.bincount(label[keep] * num_classes + pred[keep], minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)


def reduce_ignored(cm: np.ndarray, ignore_index: int | None, void_predictions: str = "drop") -> np.ndarray:
    """The confusion matrix over the evaluated classes only (the ignored row always goes; the ignored
    column is dropped with ``"drop"``, folded into the misses with ``"count"``)."""
    if ignore_index is None or not 0 <= ignore_index < len(cm):
        return cm
    keep = [c for c in range(len(cm)) if c != ignore_index]
    reduced = cm[np.ix_(keep, keep)].copy()
    if void_predictions == "count":
        # predicted-void pixels are misses: FN of the true class, FP of no evaluated class
        misses = cm[keep, ignore_index]
        reduced = np.concatenate([reduced, misses[:, None]], axis=1)
    return reduced


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU per row class; NaN where the class is in neither the labels nor the predictions."""
    n = cm.shape[0]
    tp = np.diag(cm[:, :n]).astype(np.float64)
    union = cm.sum(1) + cm[:, :n].sum(0) - tp
    return np.divide(tp, union, out=np.full(n, np.nan), where=union > 0)


def mean_iou(cm: np.ndarray) -> float:
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0


def pixel_accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm[:, : cm.shape[0]]) / total) if total else 0.0


def mean_accuracy(cm: np.ndarray) -> float:
    """Mean per-class recall over the classes present in the labels (the official "AA")."""
    n = cm.shape[0]
    support = cm.sum(1)
    recall = np.divide(np.diag(cm[:, :n]), support, out=np.zeros(n), where=support > 0)
    return float(recall[support > 0].mean()) if (support > 0).any() else 0.0


@METRICS.register_module()
class SegmentationMetric(BaseMetric):
    """mIoU, pixel accuracy and mean class accuracy over the records of a ``FuseNetSegmenter``
    (``{"pred": (H, W), "label": (H, W), "nll_sum", "num_pixels"}`` per sample).

    Keys: ``mIoU``, ``pixel_accuracy``, ``mean_accuracy`` and, if listed in ``items``,
    ``cross_entropy`` (summed per-pixel NLL over the non-ignored pixels / their number; the
    validation loss MST-Distill selects NYU checkpoints by).
    """

    default_prefix = None

    def __init__(self, num_classes: int, ignore_index: int | None = 0, void_predictions: str = "drop",
                 items: Sequence[str] = ("mIoU", "pixel_accuracy", "mean_accuracy"), collect_device: str = "cpu",
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        unknown = set(items) - set(_ITEMS)
        if unknown:
            raise ValueError(f"SegmentationMetric: unknown items {sorted(unknown)}; expected from {_ITEMS}")
        if void_predictions not in ("drop", "count"):
            raise ValueError(f"SegmentationMetric: void_predictions={void_predictions!r}; expected 'drop' or 'count'")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.void_predictions = void_predictions
        self.items = tuple(items)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            cm = pixel_confusion_matrix(sample["pred"], sample["label"], self.num_classes)
            self.results.append((cm, float(sample.get("nll_sum", 0.0)), int(sample.get("num_pixels", 0))))

    def compute_metrics(self, results: list) -> dict[str, float]:
        cm = reduce_ignored(sum(r[0] for r in results), self.ignore_index, self.void_predictions)
        pixels = sum(r[2] for r in results)
        funcs = {"mIoU": mean_iou, "pixel_accuracy": pixel_accuracy, "mean_accuracy": mean_accuracy,
                 "cross_entropy": lambda _: sum(r[1] for r in results) / pixels if pixels else 0.0}
        return {item: float(funcs[item](cm)) for item in self.items}
