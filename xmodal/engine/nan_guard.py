"""Non-finite loss guard: a NaN or Inf loss term stops training (or skips its batch) before backward.

Every model trains through mmengine's ``BaseModel.train_step`` (or its DDP wrapper's), which hands
the model's losses dict to ``model.parse_losses`` before ``optim_wrapper.update_params`` runs
backward and the optimizer step. :class:`NonFiniteLossGuard` wraps ``parse_losses`` to check every
term that enters the total (mmengine sums the keys containing ``"loss"``), so it covers every model
and every optimizer wrapper (``OptimWrapper``, ``AmpOptimWrapper``, ``CPUBf16OptimWrapper``) alike:

* ``action="stop"`` (default): raise :class:`NonFiniteLossError` naming the term(s) and the
  iteration. Nothing is stepped and no checkpoint is written after the bad batch.
* ``action="skip"``: no backward, no optimizer step for that batch; a warning with the running
  count; ``max_skips`` consecutive skipped batches stop the run. (With gradient accumulation a
  skipped batch does not count towards the accumulation window.)

Before any checkpoint is written the guard also checks that every floating-point tensor of the
model's state is finite (a non-finite gradient can corrupt weights while the loss was still finite),
and refuses to write it otherwise. In a distributed run the ranks agree at every step: a non-finite term
on any rank stops (or skips the batch on) every rank at the same step, with one message naming the
rank and its terms. ``tools/train.py`` installs the guard on every run; the config
key ``nan_guard = dict(action="stop" | "skip" | "off", max_skips=10)`` sets it up.
"""

from __future__ import annotations

import math

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop

from xmodal.engine.rank_failure import distributed
from xmodal.registry import HOOKS

ACTIONS = ("stop", "skip", "off")


class NonFiniteLossError(ValueError):
    """A loss term (or, before a checkpoint, a weight) is NaN or Inf."""


def _every_rank(error: NonFiniteLossError) -> NonFiniteLossError:
    """In a distributed run every rank raises this error at the same step with the same message
    (xmodal.engine.rank_failure reports it without a rank prefix)."""
    error.every_rank = distributed()
    return error


class _SkipBatch(Exception):
    """Raised from ``parse_losses`` in skip mode, caught by the wrapped ``train_step``."""


def _describe(value: torch.Tensor) -> str:
    value = value.detach().float()
    if value.numel() == 1:
        number = float(value)
        return f"{number:.4g}" if math.isfinite(number) else str(number)
    if torch.isnan(value).any():
        return "nan"
    return "inf" if torch.isinf(value).any() else f"{float(value.mean()):.4g} (mean)"


def loss_terms(losses: dict) -> list[tuple[str, torch.Tensor]]:
    """The tensors of a losses dict that mmengine's ``parse_losses`` sums into the total."""
    terms = []
    for key, value in losses.items():
        if "loss" not in key:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, torch.Tensor):
                terms.append((key, item))
    return terms


@HOOKS.register_module()
class NonFiniteLossGuard(Hook):
    """Stops (or skips the batch) on a NaN / Inf loss term before backward; see the module docstring."""

    priority = "VERY_HIGH"

    def __init__(self, action: str = "stop", max_skips: int = 10) -> None:
        if action not in ("stop", "skip"):
            raise ValueError(f"nan_guard.action={action!r}; expected one of {ACTIONS}")
        if not isinstance(max_skips, int) or max_skips < 1:
            raise ValueError(f"nan_guard.max_skips={max_skips!r}; expected an integer >= 1")
        self.action, self.max_skips = action, max_skips
        self.skipped = 0
        self.consecutive = 0
        self._batch_idx = 0
        self._originals: list[tuple[object, str, object]] = []

    @classmethod
    def from_config(cls, spec: dict | None) -> NonFiniteLossGuard | None:
        """The guard for a config's ``nan_guard`` entry (None when ``action="off"``)."""
        spec = dict(spec or {})
        unknown = sorted(set(spec) - {"action", "max_skips"})
        if unknown:
            raise ValueError(f"nan_guard: unknown key(s) {unknown}; expected dict(action=..., max_skips=...)")
        if spec.get("action", "stop") == "off":
            return None
        return cls(**spec)

    # -- wrapping the model ---------------------------------------------------------------------
    def _patch(self, owner, name: str, replacement) -> None:
        self._originals.append((owner, name, owner.__dict__.get(name)))
        setattr(owner, name, replacement)

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        parse_losses, train_step = model.parse_losses, runner.model.train_step

        def guarded_parse_losses(losses):
            self._check(runner, losses)
            return parse_losses(losses)

        def guarded_train_step(data, optim_wrapper):
            try:
                outputs = train_step(data, optim_wrapper=optim_wrapper)
            except _SkipBatch as skip:
                return self._skip(runner, str(skip))
            self.consecutive = 0
            return outputs

        self._patch(model, "parse_losses", guarded_parse_losses)
        self._patch(runner.model, "train_step", guarded_train_step)

    def after_train(self, runner) -> None:
        for owner, name, original in reversed(self._originals):
            if original is None:
                owner.__dict__.pop(name, None)
            else:
                setattr(owner, name, original)
        self._originals = []
        if self.skipped:
            runner.logger.warning(f"nan_guard: {self.skipped} batch(es) with a non-finite loss were skipped")

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._batch_idx = batch_idx

    # -- the check ------------------------------------------------------------------------------
    def _where(self, runner) -> str:
        where = f"iteration {runner.iter + 1}"
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop):
            where += f" (epoch {runner.epoch + 1}, batch {self._batch_idx + 1} of {len(loop.dataloader)})"
        return where

    def _check(self, runner, losses: dict) -> None:
        terms = loss_terms(losses)
        if not terms:
            return
        finite = torch.stack([torch.isfinite(v.detach()).all() for _, v in terms])
        flags = finite.tolist()
        named = ", ".join(f"{key}={_describe(v)}" for (key, v), ok in zip(terms, flags) if not ok)
        every = ", ".join(f"{key}={_describe(v)}" for key, v in terms)
        if distributed():
            message = self._agreed_message(runner, named, every)
        elif named:
            message = f"non-finite loss {named} at {self._where(runner)} (all terms: {every})"
        else:
            return
        if message is None:
            return
        if self.action == "stop":
            raise _every_rank(NonFiniteLossError(
                f"{message}: training stopped before the optimizer step; no checkpoint was written after "
                f"iteration {runner.iter}. Set nan_guard=dict(action='skip') to skip such batches instead."))
        raise _SkipBatch(message)

    def _agreed_message(self, runner, named: str, every: str) -> str | None:
        """Every rank must take the same branch, or the others wait forever in backward's all-reduce:
        the ranks agree on whether any of them has a non-finite term, and on one message naming it."""
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        bad = torch.zeros(world, dtype=torch.int32)
        bad[rank] = int(bool(named))
        torch.distributed.all_reduce(bad)
        ranks = bad.nonzero().flatten().tolist()
        if not ranks:
            return None
        described: list = [None] * world
        torch.distributed.all_gather_object(described, (named, every))
        first = ranks[0]
        also = f"; also on rank(s) {ranks[1:]}" if len(ranks) > 1 else ""
        return (f"non-finite loss {described[first][0]} on rank {first} of {world} at {self._where(runner)} "
                f"(all terms on rank {first}: {described[first][1]}{also})")

    def _skip(self, runner, message: str) -> dict:
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive >= self.max_skips:
            raise _every_rank(NonFiniteLossError(
                f"{message}: {self.consecutive} batches in a row had a non-finite loss "
                f"(nan_guard.max_skips={self.max_skips}); training stopped"))
        runner.logger.warning(f"{message}: batch skipped, no optimizer step "
                              f"({self.consecutive} in a row, {self.skipped} so far)")
        runner.message_hub.update_info("nan_guard_skipped", self.skipped)
        return {}

    # -- checkpoints ----------------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for name, value in checkpoint.get("state_dict", {}).items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
                raise NonFiniteLossError(f"weight {name} is not finite at iteration {runner.iter}: the checkpoint "
                                         "was not written (a non-finite gradient with a finite loss?)")
        checkpoint["nan_guard"] = {"skipped": self.skipped, "consecutive": self.consecutive}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get("nan_guard")
        if state and runner._resume:
            self.skipped, self.consecutive = int(state["skipped"]), int(state["consecutive"])
