"""Choose a DualHeadClassifier's inference mix on the validation split (DHO's α, β search): part of the
DHO method, beside its loss (``distill/losses/dho.py``)."""

from __future__ import annotations

import torch
from mmengine.dist import all_gather, get_world_size
from mmengine.hooks import Hook

from xmodal.engine.unwrap import unwrap
from xmodal.models.dual_head import DualHeadClassifier, mix_heads
from xmodal.registry import HOOKS


def search_combiner(main: torch.Tensor, aux: torch.Tensor, labels: torch.Tensor, alphas: list[float],
                    betas: list[float]) -> tuple[float, float, float]:
    """(alpha, beta, accuracy) with the best accuracy of ``mix_heads`` over the grid (α: the main head's
    weight). Ties keep the largest alpha, then the first beta, so α = 1 (main head alone) wins unless
    mixing helps; the official search keeps the first point of its β-major order instead, which starts
    at the auxiliary head alone (α = 0, β = 0.5)."""
    best = (1.0, 1.0, -1.0)
    for alpha in sorted(alphas, reverse=True):
        for beta in betas:
            accuracy = (mix_heads(main, aux, alpha, beta).argmax(1) == labels).float().mean().item()
            if accuracy > best[2]:
                best = (alpha, beta, accuracy)
    return best


def _dual_head_model(runner) -> DualHeadClassifier:
    model = unwrap(runner.model)
    model = getattr(model, "student", model)
    if not isinstance(model, DualHeadClassifier):
        raise TypeError(f"DualHeadCombinerHook: the (student) model is {type(model).__name__}, "
                        f"expected a DualHeadClassifier")
    return model


@HOOKS.register_module()
class DualHeadCombinerHook(Hook):
    """Before each validation, runs the model over the validation split and sets
    ``combine_alpha``/``combine_beta`` to the grid point with the best accuracy (the official DHO
    grid: α ∈ {0, 0.05, …, 1}, β ∈ {0.5, 0.75, 1, 1.25, 1.5, 2, 4}), so the validation metric, the
    best checkpoint and the test run all use the mix chosen on validation data; the test split is
    never looked at."""

    priority = "NORMAL"

    def __init__(self, alphas: list[float] | None = None, betas: list[float] | None = None) -> None:
        self.alphas = list(alphas) if alphas is not None else [round(0.05 * i, 2) for i in range(21)]
        self.betas = list(betas) if betas is not None else [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 4.0]

    def before_val_epoch(self, runner) -> None:
        model = _dual_head_model(runner)
        wrapper = unwrap(runner.model)
        was_training = wrapper.training
        wrapper.eval()
        parts: dict[str, list[torch.Tensor]] = {"main": [], "aux": [], "label": [], "index": []}
        with torch.no_grad():
            for data in runner.val_dataloader:
                batch = wrapper.data_preprocessor(data, False)
                outputs = model(mode="tensor", **batch)
                parts["main"].append(outputs["logits_main"].float())
                parts["aux"].append(outputs["logits_aux"].float())
                parts["label"].append(batch["label"])
                parts["index"].append(batch.get("index", torch.arange(len(batch["label"]))))
        wrapper.train(was_training)
        main, aux, labels = self._gather({k: torch.cat(v) for k, v in parts.items()})
        alpha, beta, accuracy = search_combiner(main, aux, labels, self.alphas, self.betas)
        model.set_combiner(alpha, beta)
        runner.logger.info(f"DualHeadCombinerHook: alpha={alpha:.2f} (main-head weight), beta={beta:g} "
                           f"→ validation accuracy {accuracy:.4f}")

    @staticmethod
    def _gather(local: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every rank gets the whole validation split, so all ranks pick the same mix; the
        sampler's padding duplicates are dropped by sample index."""
        if get_world_size() > 1:
            local = {k: torch.cat(all_gather(v)) for k, v in local.items()}
        local = {k: v.cpu() for k, v in local.items()}
        _, first = torch.unique(local["index"], return_inverse=True)
        keep = torch.zeros(len(first), dtype=torch.bool)
        seen: set[int] = set()
        for position, key in enumerate(first.tolist()):
            if key not in seen:
                seen.add(key)
                keep[position] = True
        return local["main"][keep], local["aux"][keep], local["label"][keep]
