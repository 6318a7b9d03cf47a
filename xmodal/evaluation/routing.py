"""Metrics of MST-Distill's stages: per-mask validation KL (stage 2) and router usage (stage 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from xmodal.registry import METRICS


@METRICS.register_module()
class MaskKLMetric(BaseMetric):
    """Mean T²·KL(student ‖ masked teacher) per expert: keys ``kl/<expert>`` and ``kl_mean``."""

    default_prefix = None

    def __init__(self, expert_names: Sequence[str], collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.expert_names = list(expert_names)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        self.results.extend(torch.as_tensor(s["mask_kl"]).numpy() for s in data_samples)

    def compute_metrics(self, results: list) -> dict[str, float]:
        kl = np.stack(results).mean(0)
        if len(kl) != len(self.expert_names):
            raise ValueError(f"MaskKLMetric: predictions carry {len(kl)} masks but expert_names lists "
                             f"{len(self.expert_names)}")
        return {**{f"kl/{n}": float(v) for n, v in zip(self.expert_names, kl)}, "kl_mean": float(kl.mean())}


@METRICS.register_module()
class RouterUsageMetric(BaseMetric):
    """How often the router sends samples of each class to each expert.

    Returns the overall share per expert (``router/<expert>``); the per-class table stays in
    ``usage_by_class`` (classes × experts, rows summing to 1) for :func:`plot_router_usage`.
    """

    default_prefix = None

    def __init__(self, expert_names: Sequence[str], collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.expert_names = list(expert_names)
        self.usage_by_class: np.ndarray | None = None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if "route" not in sample:
                raise KeyError("RouterUsageMetric needs predictions with a 'route' (an MST stage-3 model)")
            label = torch.as_tensor(sample["label"])
            if label.numel() != 1:
                raise ValueError("RouterUsageMetric counts routes per class and needs one label per sample; got a "
                                 f"label of shape {tuple(label.shape)} (a segmentation map?)")
            self.results.append((int(label), list(sample["route"])))

    def compute_metrics(self, results: list) -> dict[str, float]:
        ways = len(self.expert_names)
        classes = self.dataset_meta.get("classes") if self.dataset_meta else None
        num_classes = len(classes) if classes else 1 + max(label for label, _ in results)
        counts = np.zeros((num_classes, ways))
        for label, route in results:
            for expert in route:
                counts[label, expert] += 1
        self.usage_by_class = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        overall = counts.sum(0) / max(counts.sum(), 1)
        return {f"router/{n}": float(v) for n, v in zip(self.expert_names, overall)}


def plot_router_usage(usage: np.ndarray, expert_names: Sequence[str], class_names: Sequence[str] | None,
                      path: str | Path) -> Path:
    """Heat map of the share of each class's samples routed to each expert."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xmodal.engine.checkpoint import atomic_write_bytes

    classes = list(class_names) if class_names else [str(i) for i in range(len(usage))]
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(expert_names), 1.2 + 0.35 * len(classes)))
    image = ax.imshow(usage, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(expert_names)), expert_names, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("expert (teacher/masked layer)")
    ax.set_ylabel("class")
    for (row, col), value in np.ndenumerate(usage):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", color="w" if value < 0.6 else "k", fontsize=7)
    fig.colorbar(image, ax=ax, label="share of the class's samples")
    ax.set_title("router usage per class (test split)")
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(buffer.getvalue(), path)
    return Path(path)
