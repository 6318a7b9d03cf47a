"""MST-Distill stage 2, specialised masking: each MaskNet learns to move its teacher towards the student.

Student and teachers are frozen (from stage 1). For every expert, loss = T²·KL(p_student ‖
p_masked teacher) with the student detached, so each MaskNet is pulled towards what the student
can follow. Only MaskNet parameters require gradients: autograd records nothing before the masked
layer, and the layers after it pass gradients without accumulating any. The losses of different
masks touch disjoint parameters, so one Adam over all masks equals one Adam per mask (official).
Validation reports each mask's KL (``MaskKLMetric``); ``BestMaskHook`` keeps each mask's best.

``task_weight`` > 0 goes beyond the paper: each masked expert also gets ``task_weight`` times its
cross-entropy on the labelled samples, so a mask cannot trade the teacher's accuracy for closeness to
a weak student (the official stage 2 has the KL alone; 0, the default). docs/kd_efficacy.md measures
why: with frozen pretrained teachers and a label-scarce student, the KL alone drives some experts
far below their teachers.
"""

from __future__ import annotations

import torch

from xmodal.distill.base import freeze, merge_batch
from xmodal.distill.losses.kd import soft_kl
from xmodal.distill.mst.base import MaskedExpertsModel
from xmodal.distill.mst.experts import expert_logits, masks_on
from xmodal.distill.mst.members import logits_of
from xmodal.registry import MODELS


@MODELS.register_module()
class MSTMaskTrainer(MaskedExpertsModel):
    """Args:
        student, teachers: as in stage 1 (weights come from ``init_from``).
        mask_layers: ``{teacher: [module path, ...]}``, one MaskNet per entry.
        mask_shapes: ``{teacher: {path: [D] or [C, H, W]}}`` for layers whose width cannot be read.
        hidden_factor, num_heads: MaskNet size (official 2 and 3).
        init_from: the stage-1 work dir (set by the stage runner); ``None`` builds untrained members.
    """

    stage = 2

    def __init__(self, student: dict, teachers: dict[str, dict], mask_layers: dict[str, list[str]],
                 mask_shapes: dict | None = None, hidden_factor: int = 2, num_heads: int = 3,
                 temperature: float = 4.0, task_weight: float = 0.0, init_from: str | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(student, teachers, mask_layers, mask_shapes, hidden_factor, num_heads, stack_masks=False,
                         init_from=init_from, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.temperature = float(temperature)
        if not task_weight >= 0:
            raise ValueError(f"model.task_weight: expected a weight >= 0, got {task_weight!r}")
        self.task_weight = float(task_weight)
        freeze(self.student)
        freeze(self.teachers)

    def train(self, mode: bool = True) -> MSTMaskTrainer:
        super().train(mode)
        self.student.eval()  # frozen too: only the MaskNets learn
        return self

    def mask_kls(self, batch: dict, reduction: str = "batchmean") -> list[torch.Tensor]:
        target = logits_of(self.student, batch)
        return [soft_kl(expert_logits(self.teachers, self.masks, e, batch), target, self.temperature, reduction)
                for e in self.experts]

    def mask_losses(self, batch: dict) -> list[torch.Tensor]:
        """Per expert: KL towards the student plus ``task_weight`` × cross-entropy on the labelled samples."""
        target = logits_of(self.student, batch)
        losses = []
        for expert in self.experts:
            teacher = self.teachers[expert.teacher]
            with masks_on(teacher, expert, self.masks):
                outputs = teacher(mode="tensor", **batch)
            kl = soft_kl(outputs["logits"], target, self.temperature)
            losses.append(kl + self.task_weight * teacher.task_loss(outputs, batch)["loss_ce"])
        return losses

    def forward(self, batch: dict | None = None, mode: str = "tensor", **inputs):
        batch = merge_batch(self, batch, inputs)
        if mode == "loss":
            if not self.task_weight:
                return {f"loss_mask{i}": kl for i, kl in enumerate(self.mask_kls(batch))}
            return {f"loss_mask{i}": loss for i, loss in enumerate(self.mask_losses(batch))}
        if mode == "predict":
            kls = torch.stack(self.mask_kls(batch, reduction="none"), dim=1).detach().cpu()
            return [{"mask_kl": kls[i]} for i in range(len(kls))]
        return self.student(mode=mode, **batch)

