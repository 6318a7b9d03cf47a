"""MST-Distill stage 3, routing distillation: the student learns from the experts a GateNet picks.

Teachers and masks are frozen (from stage 2). Per sample, the GateNet reads the student's logits,
its softmax ranks the experts and the top-k are the sample's teachers:

    L = w_task·CE + w_kl·KD + w_lb·LB,   KD = mean over the k selected experts of T²·KL(p_expert ‖ p_student)

``kd_mode="topk"`` (official) averages the selected experts uniformly, so the top-k choice carries
no gradient and the router learns from LB alone; ``"topk_weighted"`` weighs each selected expert's
term by its gate probability renormalised over the k selected (weights summing to 1 per sample, so
the KD scale, and with it w_kl, means the same as with ``"topk"``), and KD reaches the router too,
except at k = 1 where the weight is always 1; ``"mixture"`` is the official code's unused
gate-weighted variant: one KL towards the logits of all experts summed with the gate probabilities,
the mixture detached (so, as there, KD does not reach the router). The weight schedules follow the
official code (w_lb ×0.9 every 10 epochs, w_kl ×0.5 every 30, first decay after epoch 0:
``decay_at_epoch0=True``). Expert logits come from the teacher cache when ``TeacherCacheHook`` has
attached one, else from live teacher forwards.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

import xmodal.distill.mst.gate  # noqa: F401  (registers GateNet, GateNetDense)
from xmodal.distill.base import freeze, merge_batch
from xmodal.distill.losses.kd import soft_kl
from xmodal.distill.mst.base import MaskedExpertsModel
from xmodal.distill.mst.experts import expert_logits
from xmodal.distill.mst.members import infer_num_classes, load_masks
from xmodal.distill.teacher_cache import fingerprint
from xmodal.registry import MODELS

_KD_MODES = ("topk", "topk_weighted", "mixture")


def decayed(weight: float, epoch: int, factor: float, every: int, at_epoch0: bool) -> float:
    """``weight`` after the step decays that happened before ``epoch`` (0-based). The official code
    decays at the end of epochs 0, every, 2·every, …; otherwise at the end of every−1, 2·every−1, …"""
    steps = math.ceil(epoch / every) if at_epoch0 else epoch // every
    return weight * factor**steps


@MODELS.register_module()
class MSTRouterDistiller(MaskedExpertsModel):
    """Args (beyond stage 2's): ``num_classes`` (read from the student's head if omitted), ``top_k``,
    ``kd_mode``, ``stack_masks``, ``detach_gate_input`` (official: the LB gradient also reaches the
    student through the GateNet input), ``load_balance`` (loss config), ``w_task``/``w_kl``/``w_lb``,
    ``kl_decay``/``lb_decay`` (``dict(factor, every)``), ``decay_at_epoch0``, ``gate`` (``"GateNet"``, or
    ``"GateNetDense"`` for segmentation students whose logits are (B, C, H, W)), ``teacher_cache``
    (``dict(dir=None, batch_size=256)``: the experts' logits on the training split are computed once),
    ``expert_chunk`` (samples per expert forward: a MaskNet's attention holds chunk x heads x D x D floats,
    2.2 GB for D = 596 at batch 512, so large batches are run through the experts in slices)."""

    stage = 3
    cache_hook = "TeacherCacheHook"  # teacher_cache=dict(dir=..., batch_size=...) caches every expert's logits

    def __init__(self, student: dict, teachers: dict[str, dict], mask_layers: dict[str, list[str]],
                 mask_shapes: dict | None = None, hidden_factor: int = 2, num_heads: int = 3,
                 num_classes: int | None = None, top_k: int = 1, kd_mode: str = "topk", stack_masks: bool = False,
                 detach_gate_input: bool = False, temperature: float = 4.0, gate: str = "GateNet",
                 load_balance: dict | None = None, w_task: float = 1.0, w_kl: float = 1.0, w_lb: float = 1.0,
                 kl_decay: dict | None = None, lb_decay: dict | None = None, decay_at_epoch0: bool = True,
                 init_from: str | None = None, teacher_cache: dict | None = None, expert_chunk: int = 64,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(student, teachers, mask_layers, mask_shapes, hidden_factor, num_heads, stack_masks,
                         init_from, teacher_cache, data_preprocessor, init_cfg)
        if expert_chunk < 1:
            raise ValueError(f"MSTRouterDistiller: expert_chunk must be >= 1, got {expert_chunk}")
        self.expert_chunk = int(expert_chunk)
        ways = len(self.experts)
        if not 1 <= top_k <= ways:
            raise ValueError(f"top_k={top_k} must be between 1 and the number of experts ({ways})")
        if kd_mode not in _KD_MODES:
            raise ValueError(f"MSTRouterDistiller: kd_mode={kd_mode!r}; expected one of {_KD_MODES}")
        self.gate = MODELS.build(dict(type=gate, num_classes=num_classes or infer_num_classes(self.student),
                                      ways=ways))
        self.load_balance = MODELS.build(load_balance or dict(type="LoadBalanceLoss", mode="kl"))
        self.top_k, self.kd_mode, self.stack_masks = top_k, kd_mode, stack_masks
        self.detach_gate_input, self.temperature = detach_gate_input, float(temperature)
        self.base_weights = {"task": float(w_task), "kl": float(w_kl), "lb": float(w_lb)}
        self.decays = {"kl": kl_decay or dict(factor=0.5, every=30), "lb": lb_decay or dict(factor=0.9, every=10)}
        self.decay_at_epoch0 = decay_at_epoch0
        self.weights = dict(self.base_weights)
        self.register_buffer("route_counts", torch.zeros(ways, dtype=torch.long), persistent=False)
        if init_from is not None:
            load_masks(self.masks, self.expert_names, init_from)
        freeze(self.teachers)
        freeze(self.masks)

    def train(self, mode: bool = True) -> MSTRouterDistiller:
        super().train(mode)
        self.masks.eval()
        return self

    def set_epoch(self, epoch: int) -> None:
        self.weights = dict(self.base_weights)
        for key, decay in self.decays.items():
            self.weights[key] = decayed(self.base_weights[key], epoch, decay["factor"], decay["every"],
                                        self.decay_at_epoch0)

    # -- experts: live or cached -----------------------------------------------------------------
    @torch.no_grad()
    def all_expert_logits(self, batch: dict) -> torch.Tensor:
        """(B, ways, C) logits of every expert, computed by the frozen teachers ``expert_chunk`` samples at a
        time (frozen, in eval mode: each sample's logits do not depend on the others)."""
        n = next(len(v) for v in batch.values() if isinstance(v, torch.Tensor) and v.dim())
        per_sample = {k for k, v in batch.items()
                      if isinstance(v, (torch.Tensor, list)) and (not isinstance(v, torch.Tensor) or v.dim())
                      and len(v) == n}
        parts = []
        for lo in range(0, n, self.expert_chunk):
            part = {k: v[lo:lo + self.expert_chunk] if k in per_sample else v for k, v in batch.items()}
            parts.append(torch.stack([expert_logits(self.teachers, self.masks, e, part).float()
                                      for e in self.experts], 1))
        return torch.cat(parts)

    def cache_key(self, dataset_fingerprint: str) -> str:
        return fingerprint([self.teachers, self.masks], self.expert_names, self.stack_masks, dataset_fingerprint)

    def _experts_for(self, batch: dict) -> torch.Tensor:
        if self._cache is None:
            return self.all_expert_logits(batch)
        if "index" not in batch:
            raise KeyError("teacher cache: the batch has no 'index' (sample position) to look outputs up by")
        rows = batch["index"].cpu().numpy()
        return torch.from_numpy(np.ascontiguousarray(self._cache[rows])).to(batch["index"].device)

    # -- losses -----------------------------------------------------------------------------------
    def route(self, student_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate_in = student_logits.detach() if self.detach_gate_input else student_logits
        probs = F.softmax(self.gate(gate_in.float()), dim=1)  # (B, ways), also for dense logits
        return probs, probs.topk(self.top_k, dim=1).indices

    def routed_kd(self, student_logits: torch.Tensor, experts: torch.Tensor, probs: torch.Tensor,
                  chosen: torch.Tensor) -> torch.Tensor:
        if self.kd_mode == "mixture":
            weights = probs.view(*probs.shape, *[1] * (experts.dim() - 2))
            return soft_kl(student_logits, (weights * experts).sum(1).detach(), self.temperature)
        per_sample = torch.stack([soft_kl(student_logits, experts[torch.arange(len(chosen)), chosen[:, j]],
                                          self.temperature, reduction="none") for j in range(self.top_k)], 1)
        if self.kd_mode == "topk":
            return per_sample.mean(1).mean()
        selected = probs.gather(1, chosen)
        return (selected / selected.sum(1, keepdim=True) * per_sample).sum(1).mean()

    def forward(self, batch: dict | None = None, mode: str = "tensor", **inputs):
        batch = merge_batch(self, batch, inputs)
        outputs = self.student(mode="tensor", **batch)
        logits = outputs["logits"]
        probs, chosen = self.route(logits)
        if mode == "tensor":
            return {**outputs, "gate": probs, "route": chosen}
        if mode == "predict":
            records = self.student.predictions(outputs, batch)
            for record, route in zip(records, chosen.cpu().tolist(), strict=True):  # one copy, not one per sample
                record["route"] = route
            return records
        if mode != "loss":
            raise ValueError(f"MSTRouterDistiller: unknown mode {mode!r}")
        experts = self._experts_for(batch)
        self.route_counts += torch.bincount(chosen.flatten(), minlength=len(self.experts))
        return {
            "loss_ce": self.weights["task"] * self.student.task_loss(outputs, batch)["loss_ce"],
            "loss_kd": self.weights["kl"] * self.routed_kd(logits, experts, probs, chosen),
            "loss_lb": self.weights["lb"] * self.load_balance(probs),
        }
