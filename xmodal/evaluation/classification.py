"""Classification metrics from a confusion matrix: accuracy, macro-F1, Cohen's kappa."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from xmodal.registry import METRICS


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    pred, label = np.asarray(pred, dtype=np.int64), np.asarray(label, dtype=np.int64)
    if pred.shape != label.shape:
        raise ValueError(f"confusion_matrix: {pred.shape[0]} predictions for {label.shape[0]} labels")
    for name, values in (("predictions", pred), ("labels", label)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} must lie in [0, {num_classes - 1}]")
    return np.bincount(label * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over the classes that occur in the labels or the predictions (as scikit-learn's
    ``f1_score(average="macro")`` over the present labels); a class with no TP has F1 = 0."""
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean()) if present.any() else 0.0


def cohen_kappa(cm: np.ndarray) -> float:
    """κ = (p_o − p_e) / (1 − p_e); 0 when agreement by chance is already total."""
    total = cm.sum()
    if not total:
        return 0.0
    p_o = np.trace(cm) / total
    p_e = float((cm.sum(0) * cm.sum(1)).sum()) / total**2
    return float((p_o - p_e) / (1 - p_e)) if p_e < 1 else 0.0


@METRICS.register_module()
class ClassificationMetric(BaseMetric):
    """Accuracy, macro-F1 and Cohen's kappa over the predictions of a ``ModalityClassifier``.

    Keys: ``accuracy``, ``macro_f1``, ``kappa`` and, if listed in ``items``, ``cross_entropy`` (mean
    negative log-likelihood of the label, the validation loss used for selection by some recipes).
    """

    default_prefix = None

    def __init__(self, num_classes: int | None = None, items: Sequence[str] = ("accuracy", "macro_f1", "kappa"),
                 collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        unknown = set(items) - {"accuracy", "macro_f1", "kappa", "cross_entropy"}
        if unknown:
            raise ValueError(f"ClassificationMetric: unknown items {sorted(unknown)}; "
                             f"expected from accuracy, macro_f1, kappa, cross_entropy")
        self.num_classes = num_classes
        self.items = tuple(items)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            logits = torch.as_tensor(sample["logits"])
            label = int(sample["label"])
            nll = float(-torch.log_softmax(logits.float(), 0)[label])
            self.results.append((int(logits.argmax()), label, logits.numel(), nll))

    def compute_metrics(self, results: list) -> dict[str, float]:
        pred = np.array([r[0] for r in results])
        label = np.array([r[1] for r in results])
        num_classes = self.num_classes or max(r[2] for r in results)
        cm = confusion_matrix(pred, label, num_classes)
        funcs = {"accuracy": accuracy, "macro_f1": macro_f1, "kappa": cohen_kappa,
                 "cross_entropy": lambda _: float(np.mean([r[3] for r in results]))}
        return {item: funcs[item](cm) for item in self.items}
