"""The Distiller's teacher cache: which teacher outputs to store, building them before training.

    model = dict(type="Distiller", ..., teacher_cache=dict(dir=None, outputs=None, batch_size=None))

``outputs`` lists teacher references exactly as the loss terms write them (``"t_fusion.logits"``,
``"t_fusion.fusion.fc1"``); the default is every teacher output the loss terms read. A teacher is
either cached whole (every reference to it is listed) or run live. ``dir`` defaults to
``<work_dir>/teacher_cache``; ``batch_size`` (of the build pass) to the training loader's.

``DistillerCacheHook`` computes the outputs on the training split once, before the first epoch
(rank 0, with a progress bar), into a memory-mapped entry keyed by a fingerprint of the cached
teachers' weights, the outputs, the dataset (``fingerprint()``) and its config (pipeline included);
``tools/train.py`` adds the hook when the option is set. Training then reads the rows by the
batch's ``index`` instead of running those teachers; evaluation never runs them.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from pathlib import Path

import numpy as np
import torch
from mmengine.hooks import Hook
from torch.utils.data import DataLoader

from xmodal.distill.teacher_cache import check_cacheable, fingerprint, load_or_build_outputs
from xmodal.registry import HOOKS

CACHE_OPTIONS = ("dir", "outputs", "batch_size", "enabled")


@dataclasses.dataclass
class CacheSpec:
    outputs: list[tuple[str, str]]  # (teacher, key), sorted
    dir: str | None = None
    batch_size: int | None = None

    @property
    def teachers(self) -> list[str]:
        return sorted({teacher for teacher, _ in self.outputs})

    def file_names(self) -> dict[tuple[str, str], str]:
        """One ``.npy`` name per output: the reference, with characters unsafe in file names replaced."""
        names = {ref: re.sub(r"[^A-Za-z0-9_.-]", "_", f"{ref[0]}.{ref[1]}") for ref in self.outputs}
        if len(set(names.values())) != len(names):
            raise ValueError(f"teacher_cache: outputs {sorted(names)} give clashing file names; rename a teacher")
        return names


def parse_cache_spec(cfg: dict, read: list[tuple[str, str]], teachers: list[str]) -> CacheSpec:
    """Check ``teacher_cache=dict(...)`` against the teacher references the loss terms ``read``."""
    if not isinstance(cfg, dict):
        raise ValueError(f"teacher_cache: expected dict(dir=..., outputs=['<teacher>.<key>', ...]), got {cfg!r}")
    unknown = sorted(set(cfg) - set(CACHE_OPTIONS))
    if unknown:
        raise KeyError(f"teacher_cache: unknown option(s) {unknown}; expected {list(CACHE_OPTIONS)}")
    readable = sorted({(owner, key) for owner, key in read if owner in teachers})
    names = [f"{t}.{k}" for t, k in readable]
    if not readable:
        raise ValueError("teacher_cache: no loss term reads a teacher output, so there is nothing to cache")
    if cfg.get("outputs") is None:
        chosen = readable
    else:
        if isinstance(cfg["outputs"], str) or not all(isinstance(o, str) for o in cfg["outputs"]):
            raise ValueError(f"teacher_cache.outputs: expected a list of '<teacher>.<key>' strings, "
                             f"got {cfg['outputs']!r}")
        chosen = []
        for ref in cfg["outputs"]:
            if ref not in names:
                near = difflib.get_close_matches(ref, names, n=3, cutoff=0.4)
                raise KeyError(f"teacher_cache.outputs: '{ref}' is not a teacher output the loss terms read "
                               f"(teachers {teachers}); they read {names}" + (f"; nearest: {near}" if near else ""))
            chosen.append(readable[names.index(ref)])
        chosen = sorted(set(chosen))
        for teacher in {t for t, _ in chosen}:
            missing = [f"{t}.{k}" for t, k in readable if t == teacher and (t, k) not in chosen]
            if missing:
                raise KeyError(f"teacher_cache.outputs: the loss terms also read {missing} from teacher "
                               f"'{teacher}', which would then still run every step; add them to outputs "
                               f"or leave '{teacher}' out")
    batch_size = cfg.get("batch_size")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"teacher_cache.batch_size: expected a positive integer, got {batch_size!r}")
    return CacheSpec(chosen, cfg.get("dir"), batch_size)


def _per_sample(value, ref: str, batch_size: int) -> np.ndarray:
    if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != batch_size:
        what = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"teacher_cache: '{ref}' is {what}, not one row per sample (batch of {batch_size}); "
                         f"only per-sample tensors can be cached: leave it out of teacher_cache.outputs")
    value = value.detach()
    if value.dtype == torch.bfloat16:  # numpy has no bfloat16
        value = value.float()
    return value.cpu().numpy()


def cache_key(model, spec: CacheSpec, dataset, dataset_cfg=None) -> str:
    """Fingerprint of what the cached rows depend on: the cached teachers' weights, the outputs, the
    dataset's own fingerprint (files, split, pipeline) and its config (transform arguments included)."""
    identity = dataset.fingerprint() if hasattr(dataset, "fingerprint") else (
        type(dataset).__name__, len(dataset), getattr(dataset, "metainfo", None))
    config = json.dumps(dataset_cfg, sort_keys=True, default=repr) if dataset_cfg is not None else None
    modules = [model.teachers[name] for name in spec.teachers] + [model.data_preprocessor]
    return fingerprint(modules, [f"{t}.{k}" for t, k in spec.outputs], identity, config)


def build_distiller_cache(model, dataset, collate_fn, cache_dir: str | Path, batch_size: int, num_workers: int = 0,
                          dataset_cfg=None, logger=None) -> dict[tuple[str, str], np.ndarray]:
    """The cached teacher outputs on ``dataset`` (memory-mapped), computed once per fingerprint."""
    spec = model.cache_spec
    check_cacheable(dataset)
    augments = getattr(model.data_preprocessor, "batch_augments", None)
    if augments:
        raise ValueError(f"teacher cache: the data preprocessor applies random batch augments "
                         f"{[type(a).__name__ for a in augments]}; remove them or turn the teacher cache off")
    files = spec.file_names()

    def compute():
        # a generator of its own: building the cache must not move the training RNG
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn,
                            num_workers=num_workers, generator=torch.Generator())
        for batch in loader:
            batch = model.data_preprocessor(batch, True)
            if "index" not in batch:
                raise KeyError(f"teacher cache: {type(dataset).__name__}'s samples have no 'index' (their position "
                               f"in the split) to store outputs by")
            features = model.teacher_features(batch, spec.teachers)
            rows = len(batch["index"])
            yield batch["index"].cpu().numpy(), {
                file: _per_sample(features[t][k], f"{t}.{k}", rows) for (t, k), file in files.items()}

    key = cache_key(model, spec, dataset, dataset_cfg)
    arrays = load_or_build_outputs(cache_dir, key, len(dataset), list(files.values()), compute, logger)
    return {ref: arrays[file] for ref, file in files.items()}


@HOOKS.register_module()
class DistillerCacheHook(Hook):
    """Before training, builds (or finds) the Distiller's teacher cache and attaches it to the model."""

    priority = "HIGH"

    def before_train(self, runner) -> None:
        from xmodal.engine.unwrap import unwrap

        model = unwrap(runner.model)
        if getattr(model, "cache_spec", None) is None:
            return
        loader = runner.train_dataloader
        spec = model.cache_spec
        cache_dir = spec.dir or str(Path(runner.work_dir) / "teacher_cache")
        dataset_cfg = (runner.cfg.get("train_dataloader") or {}).get("dataset")
        arrays = build_distiller_cache(model, loader.dataset, loader.collate_fn, cache_dir,
                                       spec.batch_size or loader.batch_size or 1, loader.num_workers,
                                       dataset_cfg, runner.logger)
        model.attach_cache(arrays)
