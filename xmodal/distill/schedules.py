"""Schedules of distillation loss weights, kept out of the losses' ``forward`` (which is the formula
at its current parameters)."""

from __future__ import annotations

import math

import torch
from mmengine.hooks import Hook

from xmodal.engine.unwrap import unwrap
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


def _terms_by_name(runner, hook: str, names: list[str], loss_type: type) -> dict:
    model = unwrap(runner.model)
    by_name = dict(zip((t.name for t in getattr(model, "terms", [])), getattr(model, "loss_modules", [])))
    missing = [n for n in names if n not in by_name]
    if missing:
        raise KeyError(f"{hook}: no loss term {missing}; the model's terms are {sorted(by_name)}")
    wrong = [n for n in names if not isinstance(by_name[n], loss_type)]
    if wrong:
        raise TypeError(f"{hook}: terms {wrong} are not {loss_type.__name__} terms")
    return {n: by_name[n] for n in names}


@HOOKS.register_module()
class TAIDHook(Hook):
    """Moves the ``t`` of the named TAIDLoss terms after every training step with
    :class:`~xmodal.distill.losses.taid.TAIDSchedule` (progress = iteration / max_iters); the schedule
    state travels in checkpoints so a resumed run continues the same trajectory. ``t`` is logged as
    ``taid_t/<term>``.

    ``advance_on_val=True`` also steps the schedule once per validation batch, with that batch's
    loss and the frozen training progress, as the official code does (its loss updates ``t`` in every
    forward, validation included). Default False: ``t`` then follows the optimisation alone, so it
    does not depend on how often and on how much data one validates, and no validation loss feeds
    the training trajectory."""

    priority = "NORMAL"

    def __init__(self, terms: list[str], t_start: float = 0.4, t_end: float = 1.0, alpha: float = 5e-4,
                 beta: float = 0.99, adaptive: bool = True, advance_on_val: bool = False) -> None:
        from xmodal.distill.losses.taid import TAIDSchedule

        if not isinstance(advance_on_val, bool):
            raise ValueError(f"TAIDHook: advance_on_val must be True or False, got {advance_on_val!r}")
        self.terms, self.advance_on_val = list(terms), advance_on_val
        self.schedules = {n: TAIDSchedule(t_start, t_end, alpha, beta, adaptive) for n in self.terms}

    def _losses(self, runner) -> dict:
        from xmodal.distill.losses.taid import TAIDLoss

        return _terms_by_name(runner, "TAIDHook", self.terms, TAIDLoss)

    def before_train(self, runner) -> None:
        losses = self._losses(runner)
        if runner.iter == 0:
            for name, loss in losses.items():
                loss.set_t(self.schedules[name].t_start)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        progress = runner.iter / max(runner.max_iters, 1)
        # the non-finite loss guard returns {} for a batch it skipped (nan_guard=dict(action="skip")): no
        # optimizer step was taken, so the schedule does not move either
        skipped = isinstance(outputs, dict) and not outputs
        for name, loss in self._losses(runner).items():
            value, loss.last_cross_entropy = loss.last_cross_entropy, None  # each step's value is used once
            if skipped or value is None or not math.isfinite(value):
                continue  # a NaN would poison the schedule's momentum, and with it t, for good
            loss.set_t(self.schedules[name].step(float(loss.t), value, progress))
            runner.message_hub.update_scalar(f"train/taid_t/{name}", float(loss.t))

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.advance_on_val or data_batch is None:
            return
        model = unwrap(runner.model)
        with torch.no_grad():  # the val loop has the model in eval mode: teachers run live, no CRD update
            model(mode="loss", **model.data_preprocessor(data_batch, False))
        self.after_train_iter(runner, batch_idx)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["taid_schedules"] = {n: s.state_dict() for n, s in self.schedules.items()}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        for name, state in checkpoint.get("taid_schedules", {}).items():
            if name in self.schedules:
                self.schedules[name].load_state_dict(state)
