"""Runner hooks of the MST-Distill stages."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
from mmengine.hooks import Hook
from torch.utils.data import DataLoader

from xmodal.distill.mst.members import MASKS_FILE
from xmodal.distill.teacher_cache import check_cacheable, load_or_build
from xmodal.engine.checkpoint import atomic_write_bytes, load_checkpoint_file, save_checkpoint_file
from xmodal.engine.unwrap import unwrap
from xmodal.registry import HOOKS

USAGE_FILE = "router_usage.jsonl"  # one line per epoch: {"epoch", "usage", "weights"}


@HOOKS.register_module()
class BestMaskHook(Hook):
    """Stage 2: after each validation keep every MaskNet whose validation KL improved, and write all
    kept masks to ``masks_best.pth`` (read by stage 3). Each mask is selected on its own KL."""

    priority = "LOW"

    def before_train(self, runner) -> None:
        model = unwrap(runner.model)
        self.best = [math.inf] * len(model.masks)
        self.epochs = [-1] * len(model.masks)
        self.states = [copy.deepcopy(m.state_dict()) for m in model.masks]
        path = Path(runner.work_dir) / MASKS_FILE
        if runner._resume and path.is_file():  # continue the selection of the interrupted run
            saved = load_checkpoint_file(path)
            if saved.get("experts") == model.expert_names:
                self.best, self.epochs, self.states = saved["val_kl"], saved["epoch"], saved["masks"]

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        model = unwrap(runner.model)
        changed = False
        for i, name in enumerate(model.expert_names):
            value = (metrics or {}).get(f"kl/{name}")
            if value is not None and value < self.best[i]:
                self.best[i], self.epochs[i] = float(value), runner.epoch
                self.states[i] = {k: v.detach().cpu().clone() for k, v in model.masks[i].state_dict().items()}
                changed = True
        if changed and runner.rank == 0:
            save_checkpoint_file({"experts": model.expert_names, "masks": self.states, "val_kl": self.best,
                                  "epoch": self.epochs}, Path(runner.work_dir) / MASKS_FILE)
            runner.logger.info("best masks (val KL, epoch): " + ", ".join(
                f"{n}={b:.4f}@{e}" for n, b, e in zip(model.expert_names, self.best, self.epochs)))


@HOOKS.register_module()
class RouterHook(Hook):
    """Stage 3: sets the epoch's loss weights (their decay schedule) and logs how often the router
    chose each expert during the epoch, to the log, the visualizer and ``router_usage.jsonl``."""

    priority = "NORMAL"

    def before_train_epoch(self, runner) -> None:
        model = unwrap(runner.model)
        model.set_epoch(runner.epoch)
        model.route_counts.zero_()

    def after_train_epoch(self, runner) -> None:
        model = unwrap(runner.model)
        counts = model.route_counts.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        total = max(1, int(counts.sum()))
        usage = {name: int(c) / total for name, c in zip(model.expert_names, counts.tolist())}
        if runner.rank != 0:
            return
        runner.logger.info(f"epoch {runner.epoch + 1} router usage: "
                           + ", ".join(f"{n} {u:.1%}" for n, u in usage.items())
                           + " | weights " + ", ".join(f"w_{k}={v:.4g}" for k, v in model.weights.items()))
        runner.visualizer.add_scalars({f"router/{n}": u for n, u in usage.items()}, step=runner.epoch + 1)
        write_epoch_record(Path(runner.work_dir) / USAGE_FILE,
                           {"epoch": runner.epoch + 1, "usage": usage, "weights": model.weights})


def write_epoch_record(path: Path, record: dict) -> None:
    """Put ``record`` (with an ``epoch``) into the JSON-lines file ``path`` as the last line, dropping the
    lines of that epoch and later ones. The line is written before the epoch's checkpoint, so a run killed
    in between (or resumed from an earlier checkpoint) writes those epochs again: this keeps one line per
    epoch. The file is replaced atomically, so a kill never leaves a half-written line."""
    kept = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                earlier = json.loads(line)["epoch"] < record["epoch"]
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from an older run: it is rewritten below or was never complete
            if earlier:
                kept.append(line)
    atomic_write_bytes("".join(line + "\n" for line in [*kept, json.dumps(record)]).encode(), path)


@HOOKS.register_module()
class TeacherCacheHook(Hook):
    """Stage 3: compute every expert's logits on the training split once (frozen teachers and masks,
    fixed inputs) and serve them from a memory-mapped file for all epochs. The entry is keyed by a
    fingerprint of weights and data.

    Switched on by the model's ``teacher_cache=dict(dir=None, batch_size=256)`` (``tools/train.py``
    adds this hook then); the hook's own arguments, if given, win over the model's. ``dir`` defaults
    to ``<work_dir>/teacher_cache``."""

    priority = "HIGH"

    def __init__(self, enabled: bool | None = None, cache_dir: str | None = None,
                 batch_size: int | None = None) -> None:
        self.enabled, self.cache_dir, self.batch_size = enabled, cache_dir, batch_size

    def before_train(self, runner) -> None:
        model = unwrap(runner.model)
        options = getattr(model, "teacher_cache", None) or {}
        enabled = self.enabled if self.enabled is not None else options.get("enabled", True)
        if not enabled:
            model.attach_cache(None)
            return
        loader = runner.train_dataloader
        cache_dir = self.cache_dir or options.get("dir") or str(Path(runner.work_dir) / "teacher_cache")
        batch_size = self.batch_size or options.get("batch_size") or 256
        model.attach_cache(build_expert_cache(model, loader.dataset, loader.collate_fn, cache_dir, batch_size,
                                              runner.logger))


def build_expert_cache(model, dataset, collate_fn, cache_dir: str | Path, batch_size: int = 256, logger=None):
    """Every expert's logits on ``dataset`` (N × ways × C, memory-mapped), computed once per fingerprint."""
    check_cacheable(dataset)
    key = model.cache_key(dataset.fingerprint())

    def compute():
        was_training = model.training
        model.eval()
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn):
            batch = model.data_preprocessor(batch, False)
            yield batch["index"].cpu().numpy(), model.all_expert_logits(batch).cpu().numpy()
        model.train(was_training)

    return load_or_build(cache_dir, key, len(dataset), compute, logger)
