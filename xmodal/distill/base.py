"""BaseDistiller: what every xmodal distiller shares (the generic Distiller, RetrievalDistiller and
MST-Distill's three stage models).

It owns:
- ``student`` (a task model, trainable) and ``teachers`` (an ``nn.ModuleDict``; frozen by default:
  eval mode, no gradients, loaded from their checkpoints by :func:`build_teacher`);
- ``student_state_dict()``: the student's weights alone, which load into the plain student config
  (``StudentExportHook`` and ``tools/export.py`` write them);
- ``init_from``: a previous run's or stage's work dir (or checkpoint file) whose ``student.*`` and
  ``teachers.*`` weights the distiller starts from. Staged recipes set it for stages 2+ (the stage
  runner fills it in); a user may set it to warm-start a distiller from an earlier run;
- one teacher-cache switch: ``teacher_cache=dict(...)`` in the model config. ``tools/train.py`` then
  adds the hook named by ``cache_hook``, which builds the cache before training and hands it to
  :meth:`attach_cache`. ``None`` (or ``enabled=False``) runs the teachers every step.

Subclasses add their loss wiring, and may override :meth:`build_student` / :meth:`build_teacher`
(MST-Distill builds architectures whose weights come from the previous stage).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from torch import nn

from xmodal.engine.checkpoint import load_checkpoint_file, load_weights, resolve_checkpoint, state_dict_of
from xmodal.errors import CheckpointError
from xmodal.registry import MODELS


def build_teacher(name: str, spec: dict, key: str | None = None) -> nn.Module:
    """A frozen teacher. ``spec``: ``model`` (a model config) or ``config`` (a training config file
    whose ``model`` is used), plus ``checkpoint`` (a file, or the teacher's work dir to take its
    best_*.pth). ``key``: the teacher's config key for messages (default ``model.teachers.<name>``)."""
    key = key or f"model.teachers.{name}"
    if not isinstance(spec, dict) or ("model" not in spec) == ("config" not in spec):
        raise ValueError(f"{key}: teacher '{name}': expected dict(model=<model config>) or dict(config='file.py'), "
                         f"plus checkpoint=...; got {spec!r}")
    model_cfg = spec["model"] if "model" in spec else Config.fromfile(spec["config"]).model
    teacher = MODELS.build(model_cfg)
    checkpoint = spec.get("checkpoint")
    if checkpoint is None:
        # a model that loads its own published weights (``pretrained=<local file or dir>``) needs no checkpoint
        if model_cfg.get("pretrained") is None and not spec.get("allow_random_init", False):
            raise ValueError(f"{key}: teacher '{name}' has no 'checkpoint': train the teacher first and set "
                             f"checkpoint to its best_*.pth or work dir, or give the model its own "
                             f"pretrained=<local weights> (or allow_random_init=True for tests)")
    else:
        load_weights(teacher, resolve_checkpoint(checkpoint), what=f"teacher '{name}'")
    freeze(teacher)
    return teacher


def freeze(module: nn.Module) -> None:
    module.eval()
    module.requires_grad_(False)


def previous_checkpoint(source: str | Path, what: str) -> Path:
    """The checkpoint ``init_from`` names: a file, or a work dir's best (else last) checkpoint."""
    source = Path(source)
    if not source.exists():
        raise CheckpointError(f"{what} starts from {source}, which does not exist: run that stage (or run) first "
                              f"(tools/train.py CONFIG, or --stage N for one stage)")
    return source if source.is_file() else resolve_checkpoint(source)


def load_parts(model: nn.Module, path: Path, prefixes: tuple[str, ...], what: str) -> None:
    """Copy the weights under ``prefixes`` from a checkpoint into ``model``, strictly for those parts."""
    state = state_dict_of(load_checkpoint_file(path))
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    given = {k: v for k, v in state.items() if k.startswith(prefixes)}
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    wrong = [f"{k}: {tuple(given[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in given and given[k].shape != v.shape]
    if missing or unexpected or wrong:
        hint = difflib.get_close_matches(missing[0], unexpected, n=1) if missing else []
        raise CheckpointError(
            f"{path}: does not match the {what} (its teachers/student/mask configs changed since that stage ran?)\n"
            f"  missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}"
            + (f" (checkpoint has '{hint[0]}')" if hint else "")
            + f"\n  unexpected: {unexpected[:5]}\n  shape mismatches: {wrong[:5]}")
    model.load_state_dict(given, strict=False)


class BaseDistiller(BaseModel):
    """Args:
        student: the student's model config.
        teachers: ``{name: spec}``, each built by :meth:`build_teacher`.
        init_from: work dir or checkpoint whose ``student.*`` / ``teachers.*`` weights to start from.
        teacher_cache: ``dict(...)`` switches the teacher cache on (options depend on the distiller;
            ``dir`` and ``batch_size`` are common); ``None`` runs the teachers every step.
    """

    cache_hook: str | None = None  # registry name of the hook that builds this distiller's cache
    frozen_teachers = True  # MST-Distill's stage 1 trains its teachers

    def __init__(self, student: dict, teachers: dict[str, dict], init_from: str | None = None,
                 teacher_cache: dict | None = None, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not isinstance(teachers, dict):
            raise ValueError(f"model.teachers: expected {{name: teacher spec}}, got {type(teachers).__name__}")
        if "student" in teachers:
            raise ValueError("model.teachers: a teacher cannot be called 'student'")
        self.student = self.build_student(student)
        self.teachers = nn.ModuleDict({name: self.build_teacher(name, spec) for name, spec in teachers.items()})
        self.init_from = init_from
        self.teacher_cache = self._check_cache_cfg(teacher_cache)
        self._cache: Any = None
        if init_from is not None:
            self.load_init_from(init_from)

    # -- building ---------------------------------------------------------------------------------
    def build_student(self, cfg: dict) -> nn.Module:
        return MODELS.build(cfg)

    def build_teacher(self, name: str, spec: dict) -> nn.Module:
        return build_teacher(name, spec)

    def load_init_from(self, source: str | Path) -> None:
        """Start the student and teachers from ``source`` (strict for those parts)."""
        load_parts(self, previous_checkpoint(source, type(self).__name__), ("student.", "teachers."),
                   "student and teachers it was saved with")

    def _check_cache_cfg(self, cfg: dict | None) -> dict | None:
        if cfg is None:
            return None
        if not isinstance(cfg, dict):
            raise ValueError(f"model.teacher_cache: expected dict(...) or None, got {cfg!r}")
        if self.cache_hook is None:
            raise ValueError(f"model.teacher_cache: {type(self).__name__} has no teacher cache; remove the field")
        return dict(cfg)

    def init_weights(self) -> None:
        """The student initialises itself when built; teachers come from their checkpoints."""

    def train(self, mode: bool = True) -> BaseDistiller:
        super().train(mode)
        if self.frozen_teachers:
            self.teachers.eval()  # no dropout, no BatchNorm statistics updates
        return self

    # -- what every distiller offers ----------------------------------------------------------------
    def student_state_dict(self) -> dict[str, torch.Tensor]:
        """The student's weights alone; they load into the plain student config."""
        return self.student.state_dict()

    @property
    def cache_enabled(self) -> bool:
        """Whether ``tools/train.py`` should add :attr:`cache_hook` (the config switched the cache on)."""
        return self.teacher_cache is not None and self.teacher_cache.get("enabled", True)

    def attach_cache(self, cache: Any) -> None:
        """Cached teacher outputs (indexed by the batch's ``index``) built by the cache hook; ``None``
        runs the teachers."""
        self._cache = cache

    # -- forward ----------------------------------------------------------------------------------
    def distill_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The training losses on one batch: ``{name: scalar}``."""
        raise NotImplementedError

    def forward(self, batch: dict | None = None, mode: str = "tensor", **inputs):
        """``"loss"``: :meth:`distill_losses`; ``"tensor"`` / ``"predict"``: the student alone. The batch may
        be one dict or keywords, as for task models."""
        inputs = merge_batch(self, batch, inputs)
        if mode == "loss":
            return self.distill_losses(inputs)
        return self.student(mode=mode, **inputs)


def merge_batch(model: nn.Module, batch: dict | None, inputs: dict) -> dict:
    """``model(batch)`` and ``model(**batch)`` mean the same."""
    if batch is None:
        return inputs
    if not isinstance(batch, dict):
        raise TypeError(f"{type(model).__name__}: pass the batch as a dict or as keywords; got a positional "
                        f"{type(batch).__name__}")
    return {**batch, **inputs}
