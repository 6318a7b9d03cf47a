"""The generic Distiller: one trainable student, frozen teachers, a list of weighted loss terms.

A loss term is one dict in the config::

    dict(type="KDLoss", weight=1.0, student="logits", teacher="t_fusion.logits", temperature=4.0)

``student`` / ``teacher`` name what the loss compares: an output key of the model (``logits``,
``embedding``) or, failing that, a module path whose output is recorded with a forward hook
(``"fusion.fc1"``). Teacher references start with the teacher's name. Every reference is checked
when the Distiller is built. Total loss = task_loss_weight · student task loss + Σ weight · term,
each term logged under its own name.

A loss whose ``forward`` takes more than ``(student, teacher, target)`` gets the rest through
``inputs``: ``{argument: reference}``, a reference being ``"student.<key>"``, ``"<teacher>.<key>"``
or ``"batch.<key>"`` (e.g. ``inputs=dict(index="batch.index", teacher_logits="t0.logits")``).

``teacher_cache=dict(outputs=["t0.logits", ...])`` reads those teacher outputs from a cache built once
before training (``xmodal/distill/distiller_cache.py``) instead of running the teachers each step.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect

import numpy as np
import torch
from torch import nn

from xmodal.distill.base import BaseDistiller
from xmodal.distill.distiller_cache import CacheSpec, parse_cache_spec
from xmodal.distill.recorder import FeatureRecorder
from xmodal.registry import MODELS

_TERM_KEYS = ("type", "weight", "student", "teacher", "name", "connector", "inputs")


@dataclasses.dataclass
class LossTerm:
    name: str
    weight: float
    student_key: str
    teacher: str
    teacher_key: str
    wants_target: bool
    inputs: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)  # argument → (owner, key)

    def references(self) -> list[tuple[str, str]]:
        """Every (owner, key) the term reads; owner is "student", a teacher name or "batch"."""
        return [("student", self.student_key), (self.teacher, self.teacher_key), *self.inputs.values()]


def _output_or_module(model: nn.Module, key: str, owner: str) -> str:
    """'output' if ``key`` is one of the model's output keys, 'module' if it is a module path."""
    if key in getattr(model, "output_keys", ()):
        return "output"
    names = [n for n, _ in model.named_modules() if n]
    if key in names:
        return "module"
    choices = list(getattr(model, "output_keys", ())) + names
    near = difflib.get_close_matches(key, choices, n=5, cutoff=0.4)
    raise KeyError(f"{owner}: '{key}' is neither an output key {list(getattr(model, 'output_keys', ()))} "
                   f"nor a module path; nearest: {near}")


def _who(owner: str) -> str:
    return "the student" if owner == "student" else f"teacher '{owner}'"


@MODELS.register_module()
class Distiller(BaseDistiller):
    """Student + frozen teachers + loss terms. ``mode="predict"``/``"tensor"`` run the student only."""

    cache_hook = "DistillerCacheHook"

    def __init__(self, student: dict, teachers: dict[str, dict], losses: list[dict], task_loss_weight: float = 1.0,
                 teacher_cache: dict | None = None, init_from: str | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(student, teachers, init_from=init_from, teacher_cache=teacher_cache,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.task_loss_weight = float(task_loss_weight)
        self.loss_modules = nn.ModuleList()
        self.connectors = nn.ModuleDict()
        self.terms = [self._add_term(i, dict(cfg)) for i, cfg in enumerate(losses)]
        refs = [ref for term in self.terms for ref in term.references()]
        self._student_recorder = FeatureRecorder(
            self.student, self._module_keys(refs, "student", self.student), owner="student")
        self._teacher_recorders = {
            name: FeatureRecorder(teacher, self._module_keys(refs, name, teacher), owner=f"teacher '{name}'")
            for name, teacher in self.teachers.items()
        }
        self._used_teachers = sorted({owner for owner, _ in refs if owner in self.teachers})
        self.cache_spec: CacheSpec | None = None if not self.cache_enabled else parse_cache_spec(
            self.teacher_cache, refs, sorted(self.teachers))

    @classmethod
    def _module_keys(cls, refs: list[tuple[str, str]], owner: str, model: nn.Module) -> list[str]:
        return sorted({key for who, key in refs if who == owner and cls._is_module(model, key)})

    @staticmethod
    def _is_module(model: nn.Module, key: str) -> bool:
        return key not in getattr(model, "output_keys", ())

    def _add_term(self, index: int, cfg: dict) -> LossTerm:
        where = f"model.losses[{index}] ({cfg.get('type', '?')})"  # the config key, as errors.py names keys
        for key in ("type", "student", "teacher"):
            if key not in cfg:
                raise KeyError(f"{where}: required key '{key}' missing; a term looks like "
                               f"dict(type='KDLoss', weight=1.0, student='logits', teacher='t0.logits')")
        teacher_ref = cfg["teacher"]
        teacher, _, teacher_key = teacher_ref.partition(".")
        if teacher not in self.teachers or not teacher_key:
            raise KeyError(f"{where}: teacher='{teacher_ref}' must be '<teacher name>.<output key or module path>' "
                           f"with a teacher name from {sorted(self.teachers)}")
        student_key = cfg["student"].removeprefix("student.")
        _output_or_module(self.student, student_key, f"{where}: student")
        _output_or_module(self.teachers[teacher], teacher_key, f"{where}: teacher '{teacher}'")
        params = {k: v for k, v in cfg.items() if k not in _TERM_KEYS}
        loss = MODELS.build({"type": cfg["type"], **params})
        self.loss_modules.append(loss)
        name = cfg.get("name") or f"{cfg['type'].removesuffix('Loss').lower()}_{index}"
        if cfg.get("connector") is not None:
            self.connectors[name] = MODELS.build(cfg["connector"])
        parameters = inspect.signature(loss.forward).parameters
        inputs = {arg: self._parse_input(where, arg, ref, parameters) for arg, ref in (cfg.get("inputs") or {}).items()}
        return LossTerm(name, float(cfg.get("weight", 1.0)), student_key, teacher, teacher_key,
                        "target" in parameters, inputs)

    def _parse_input(self, where: str, arg: str, ref: str, parameters) -> tuple[str, str]:
        if arg not in parameters or arg in ("target",) or list(parameters).index(arg) < 2:
            raise KeyError(f"{where}: inputs['{arg}'] is not an extra argument of the loss's forward; "
                           f"its arguments are {list(parameters)[2:]}")
        owner, _, key = str(ref).partition(".")
        if owner == "batch" and key:
            return owner, key
        model = self.student if owner == "student" else self.teachers[owner] if owner in self.teachers else None
        if model is None or not key:
            raise KeyError(f"{where}: inputs['{arg}']='{ref}' must be 'student.<key>', 'batch.<key>' or "
                           f"'<teacher>.<key>' with a teacher name from {sorted(self.teachers)}")
        _output_or_module(model, key, f"{where}: inputs['{arg}']")
        return owner, key

    @staticmethod
    def _pick(outputs: dict, recorded: dict, key: str) -> torch.Tensor:
        return outputs[key] if key in outputs else recorded[key]

    def check_modalities(self, batch: dict, owners: list[str]) -> None:
        """Before any model runs, name the one ("student" or a teacher) that reads a modality the batch
        lacks (models declare theirs as ``modalities``). The dataset is only known once batches arrive,
        so this is the earliest place a teacher/student modality mismatch can be caught."""
        reads = {}
        for owner in owners:
            model = self.student if owner == "student" else self.teachers[owner]
            declared = getattr(model, "modalities", None)
            reads[owner] = list(declared) if isinstance(declared, (list, tuple)) else []
        for owner, needed in reads.items():
            missing = [m for m in needed if m not in batch]
            if missing:
                readers = ", ".join(f"{_who(o)} reads {m}" for o, m in reads.items() if m)
                key = "model.student" if owner == "student" else f"model.teachers.{owner}"
                raise KeyError(f"{key}: {_who(owner)} reads modality {missing}, which the batch does not have "
                               f"(batch keys: {sorted(batch)}); add it to train_dataloader.dataset.modalities "
                               f"({readers})")

    @torch.no_grad()
    def teacher_features(self, batch: dict, names: list[str]) -> dict[str, dict[str, torch.Tensor]]:
        """Run the named teachers: ``{teacher: {output key or recorded module path: tensor}}``."""
        self.check_modalities(batch, names)
        features = {}
        for name in names:
            outputs = self.teachers[name](mode="tensor", **batch)
            features[name] = {**self._teacher_recorders[name].pop(), **outputs}  # output keys win, as in _pick
        return features

    def _cached_features(self, batch: dict) -> dict[str, dict[str, torch.Tensor]]:
        if self._cache is None:
            raise RuntimeError("teacher_cache is set but no cache is attached: DistillerCacheHook builds it "
                               "before training (tools/train.py adds it; a Runner built by hand needs "
                               "custom_hooks=[dict(type='DistillerCacheHook')])")
        if "index" not in batch:
            raise KeyError(f"teacher cache: the batch has no 'index' (sample position) to look outputs up by; "
                           f"it has {sorted(batch)}")
        rows = batch["index"].cpu().numpy()
        features: dict[str, dict[str, torch.Tensor]] = {}
        for (teacher, key), array in self._cache.items():
            features.setdefault(teacher, {})[key] = torch.from_numpy(np.ascontiguousarray(array[rows])).to(
                batch["index"].device)
        return features

    def distill_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        cached = self.cache_spec.teachers if self.cache_spec is not None and self.training else []
        running = [n for n in self._used_teachers if n not in cached]
        self.check_modalities(batch, ["student", *running])
        student_out = self.student(mode="tensor", **batch)
        student_rec = self._student_recorder.pop()
        teacher = self.teacher_features(batch, running)
        if cached:
            teacher.update(self._cached_features(batch))
        losses = {}
        if self.task_loss_weight:
            task = self.student.task_loss(student_out, batch)  # labelled samples only (TaskModel)
            weight = self.task_loss_weight
            losses.update({k: v * weight if weight != 1 else v for k, v in task.items()})  # no graph node for 1
        for term, loss in zip(self.terms, self.loss_modules):
            s = self._pick(student_out, student_rec, term.student_key)
            t = teacher[term.teacher][term.teacher_key]
            if term.name in self.connectors:
                s = self.connectors[term.name](s)
            extra = {}
            for arg, (owner, key) in term.inputs.items():
                if owner == "batch":
                    if key not in batch:
                        raise KeyError(f"loss term '{term.name}': inputs['{arg}'] reads batch['{key}'], but the "
                                       f"batch has {sorted(batch)}")
                    extra[arg] = batch[key]
                elif owner == "student":
                    extra[arg] = self._pick(student_out, student_rec, key)
                else:
                    extra[arg] = teacher[owner][key]
            if term.wants_target:
                extra["target"] = batch.get("label")
            value = loss(s, t, **extra)
            losses[f"loss_{term.name}"] = term.weight * value if term.weight != 1 else value
        return losses

    def forward(self, batch: dict | None = None, mode: str = "tensor", **inputs):
        result = super().forward(batch, mode, **inputs)
        if mode != "loss":
            self._student_recorder.pop()  # features are only needed for the loss
        return result
