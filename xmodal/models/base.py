"""TaskModel: the contract every xmodal task model follows (classifier, segmenter, detector, retriever).

A task model turns a batch dict into named outputs and knows its own supervised loss and its
per-sample prediction records. The base class owns what is the same for all of them:

- ``forward(batch, mode=...)`` dispatch: ``"tensor"`` → :meth:`extract`, ``"loss"`` →
  :meth:`task_loss`, ``"predict"`` → :meth:`predictions`. The batch may be passed as one dict
  (``model(batch)``, a notebook's habit) or as keywords (``model(**batch, mode="loss")``, what
  mmengine's Runner does); both mean the same.
- **unlabelled samples.** A sample is unlabelled when its ``label`` is ``-1`` (classification),
  its label map is ``-1`` everywhere (segmentation) or its ``labelled`` flag is false (detection
  scenes). :meth:`task_loss` hands only the labelled samples to the model's :meth:`supervised_loss`
  and returns exact zeros, connected to the graph, when a batch holds none. This is the one place
  where the rule lives: distillation terms see every sample (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
from mmengine.model import BaseModel
from torch import nn

UNLABELLED = -1  # label value of an unlabelled sample (and of every pixel of an unlabelled label map)


def labelled_mask(batch: Mapping) -> torch.Tensor | None:
    """(B,) bool of the samples that carry supervision, or ``None`` when the batch says nothing
    (no ``label`` and no ``labelled`` field: every sample counts, e.g. image-caption pairs)."""
    if "labelled" in batch:
        flag = batch["labelled"]
        return torch.as_tensor(flag, dtype=torch.bool).reshape(-1)
    label = batch.get("label")
    if not isinstance(label, torch.Tensor) or label.dim() == 0:
        return None
    if label.dim() == 1:
        return label != UNLABELLED
    return (label.flatten(1) != UNLABELLED).any(1)


def select_samples(values: Mapping, keep: torch.Tensor, size: int) -> dict:
    """The rows ``keep`` of every per-sample entry of ``values`` (a tensor whose first dimension is
    ``size``, or a list/tuple of ``size`` items); other entries (a logit scale, a pose table) are
    passed through unchanged."""
    rows = keep.nonzero().flatten()
    picked = {}
    for key, value in values.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == size:
            picked[key] = value[rows.to(value.device)]
        elif isinstance(value, (list, tuple)) and len(value) == size:
            picked[key] = type(value)(value[i] for i in rows.tolist()) if isinstance(value, tuple) \
                else [value[i] for i in rows.tolist()]
        else:
            picked[key] = value
    return picked


def zero_like_outputs(outputs: Mapping) -> torch.Tensor:
    """An exact 0 that is connected to every output requiring a gradient (so DDP sees each parameter
    used and backward gives zero, finite gradients)."""
    zero = None
    for value in outputs.values():
        if isinstance(value, torch.Tensor) and value.requires_grad:
            term = value.float().sum() * 0.0
            zero = term if zero is None else zero + term
    return zero if zero is not None else torch.zeros(())


@dataclasses.dataclass
class ExportGraph:
    """One ONNX graph of a model: the module to trace, its example inputs (name → tensor), output names and
    metadata. ``suffix`` names the file (``student<suffix>.onnx``)."""

    suffix: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]
    outputs: list[str]
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


class ModalityInputs(nn.Module):
    """Positional tensors named after the modalities in, the model's chosen outputs out (what a traced graph
    needs: no dict input, no mode switch)."""

    def __init__(self, model: nn.Module, inputs: list[str], outputs: list[str]) -> None:
        super().__init__()
        self.model, self.inputs, self.outputs = model, list(inputs), list(outputs)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(mode="tensor", **dict(zip(self.inputs, tensors)))
        return tuple(out[k] for k in self.outputs)


class TaskModel(BaseModel):
    """Base of every xmodal task model.

    Subclasses set:
        modalities: the batch keys holding the inputs the model reads (``["image"]``,
            ``["image", "audio"]``); distillers check them against the batch before running.
        output_keys: the names :meth:`extract` returns; loss terms may read any of them.
        task_loss_names: the keys :meth:`supervised_loss` returns (so an all-unlabelled batch can
            report the same keys, as zeros).
    and implement :meth:`extract`, :meth:`supervised_loss` and :meth:`predictions`.
    """

    modalities: Sequence[str] = ()
    output_keys: tuple[str, ...] = ()
    task_loss_names: tuple[str, ...] = ("loss_task",)

    def init_weights(self) -> None:
        """Modules initialise themselves (or load their weights) when built; the Runner's init pass
        must not re-initialise them."""

    # -- what a subclass implements ---------------------------------------------------------------
    def extract(self, batch: Mapping) -> dict[str, torch.Tensor]:
        """The model's outputs on ``batch``: ``{output key: tensor}``."""
        raise NotImplementedError

    def supervised_loss(self, outputs: Mapping, batch: Mapping) -> dict[str, torch.Tensor]:
        """The task loss on labelled samples only (:meth:`task_loss` has removed the others)."""
        raise NotImplementedError

    def predictions(self, outputs: Mapping, batch: Mapping) -> list[dict]:
        """One record per sample (so distributed evaluation can drop the sampler's padding)."""
        raise NotImplementedError

    # -- what the base owns -------------------------------------------------------------------------
    def task_loss(self, outputs: Mapping, batch: Mapping) -> dict[str, torch.Tensor]:
        """:meth:`supervised_loss` on the batch's labelled samples; exact zeros when it has none."""
        keep = labelled_mask(batch)
        if keep is None or bool(keep.all()):
            return self.supervised_loss(outputs, batch)
        if not bool(keep.any()):
            zero = zero_like_outputs(outputs)
            return {name: zero for name in self.task_loss_names}
        size = len(keep)
        return self.supervised_loss(select_samples(outputs, keep, size), select_samples(batch, keep, size))

    # -- ONNX export (tools/export.py) -------------------------------------------------------------
    def export_inputs(self) -> list[str]:
        """The batch fields the exported graphs read: by default one tensor per modality, for a model with
        ``logits``; a model that cannot be traced raises a ValueError saying so."""
        if not self.modalities or "logits" not in self.output_keys:
            raise ValueError(f"--onnx: ONNX export of a {type(self).__name__} is not supported; write the "
                             f"student-only checkpoint without --onnx")
        return list(self.modalities)

    def export_suffixes(self) -> list[str]:
        """One ``suffix`` per graph :meth:`export_graphs` returns (known before any example batch exists)."""
        return [""]

    def export_graphs(self, batch: Mapping) -> list[ExportGraph]:
        """The graphs of an ONNX export with example inputs from ``batch``: one graph, modality tensors in,
        ``logits`` (and ``embedding``) out."""
        names = self.export_inputs()
        example = {n: batch[n] for n in names}
        bad = [n for n, v in example.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise ValueError(f"--onnx: batch fields {bad} are not tensors; the ONNX graph takes one tensor per "
                             f"modality")
        with torch.no_grad():
            produced = self(mode="tensor", **example)
        outputs = [k for k in ("logits", "embedding") if isinstance(produced.get(k), torch.Tensor)]
        return [ExportGraph("", ModalityInputs(self, names, outputs), example, outputs)]

    def forward(self, batch: Mapping | None = None, mode: str = "tensor", **inputs):
        if batch is not None:
            if not isinstance(batch, Mapping):
                raise TypeError(f"{type(self).__name__}: pass the batch as a dict (model(batch)) or as keywords "
                                f"(model(image=x)); got a positional {type(batch).__name__}")
            inputs = {**batch, **inputs}
        if mode not in ("tensor", "loss", "predict"):
            raise ValueError(f"{type(self).__name__}: unknown mode {mode!r}; expected 'tensor', 'loss' or 'predict'")
        outputs = self.extract(inputs)
        if mode == "tensor":
            return outputs
        if mode == "loss":
            return self.task_loss(outputs, inputs)
        return self.predictions(outputs, inputs)
