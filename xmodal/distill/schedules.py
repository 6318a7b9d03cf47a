"""Schedules of distillation loss weights, kept out of the losses' ``forward`` (which is the formula
at its current parameters)."""

from __future__ import annotations

from mmengine.hooks import Hook

from xmodal.engine.hooks import unwrap
from xmodal.registry import HOOKS


def linear_warmup(epoch: int, warmup_epochs: int) -> float:
    """min((epoch + 1) / warmup_epochs, 1) for a 0-based epoch: DKD's ramp (its epochs count from 1)."""
    return min((epoch + 1) / warmup_epochs, 1.0) if warmup_epochs > 0 else 1.0


@HOOKS.register_module()
class DistillWeightWarmupHook(Hook):
    """Scales the weights of the named Distiller loss terms (``losses[i].name``, default
    ``<type>_<i>``, e.g. ``"dkd_0"``) by :func:`linear_warmup` at the start of every epoch."""

    priority = "NORMAL"

    def __init__(self, terms: list[str], warmup_epochs: int = 20) -> None:
        self.terms, self.warmup_epochs = list(terms), int(warmup_epochs)
        self._base: dict[str, float] | None = None

    def before_train_epoch(self, runner) -> None:
        model = unwrap(runner.model)
        by_name = {term.name: term for term in getattr(model, "terms", [])}
        missing = [t for t in self.terms if t not in by_name]
        if missing:
            raise KeyError(f"DistillWeightWarmupHook: no loss term {missing}; the model's terms are {sorted(by_name)}")
        if self._base is None:
            self._base = {name: by_name[name].weight for name in self.terms}
        factor = linear_warmup(runner.epoch, self.warmup_epochs)
        for name in self.terms:
            by_name[name].weight = self._base[name] * factor
