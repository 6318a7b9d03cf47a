"""MST-Distill stage 1, collaborative initialisation: the student and every teacher train together.

Each model minimises its cross-entropy plus T²·KL towards each of the others (mutual learning).
As in the official code the peers are not detached (``detach_peers=False``): a KL term pulls both
of its models. Teachers start from scratch unless their spec names a ``checkpoint``.

``train_teachers=False`` goes beyond the paper: teachers that start from a checkpoint stay frozen and
only the student learns (its cross-entropy plus T²·KL towards each teacher). It is meant for teachers
trained on more labels than the student's data carries: mutual learning on a label-scarce split pulls
them towards the weak student (measured in docs/kd_efficacy.md).
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.distill.base import BaseDistiller, freeze
from xmodal.distill.losses.kd import soft_kl
from xmodal.distill.mst.members import build_member
from xmodal.registry import MODELS


@MODELS.register_module()
class MSTCoTrainer(BaseDistiller):
    """The teachers train here unless ``train_teachers=False``; a teacher spec may name a ``checkpoint``."""

    frozen_teachers = False

    def __init__(self, student: dict, teachers: dict[str, dict], temperature: float = 4.0,
                 detach_peers: bool = False, train_teachers: bool = True, init_from: str | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        if not isinstance(train_teachers, bool):
            raise ValueError(f"model.train_teachers: expected True or False, got {train_teachers!r}")
        if not train_teachers:
            untrained = [name for name, spec in teachers.items() if not spec.get("checkpoint")]
            if untrained and init_from is None:
                raise ValueError(f"model.train_teachers=False freezes the teachers, but {untrained} name no "
                                 f"'checkpoint': a frozen teacher must start from trained weights")
        super().__init__(student, teachers, init_from=init_from, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.temperature = float(temperature)
        self.detach_peers = detach_peers
        self.frozen_teachers = not train_teachers
        if not train_teachers:
            for teacher in self.teachers.values():
                freeze(teacher)

    def build_student(self, cfg: dict) -> nn.Module:
        return build_member("student", {"model": cfg})

    def build_teacher(self, name: str, spec: dict) -> nn.Module:
        return build_member(f"teacher '{name}'", spec)

    def members(self) -> dict[str, nn.Module]:
        return {"student": self.student, **self.teachers}

    def learners(self) -> list[str]:
        """The members that train in this stage."""
        return ["student"] if self.frozen_teachers else list(self.members())

    def distill_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        members = self.members()
        outputs = {name: model(mode="tensor", **batch) for name, model in members.items()}
        logits = {name: out["logits"] for name, out in outputs.items()}
        losses: dict[str, torch.Tensor] = {}
        for name in self.learners():
            own = logits[name]
            losses[f"loss_ce_{name}"] = members[name].task_loss(outputs[name], batch)["loss_ce"]
            peers = [other.detach() if self.detach_peers else other for n, other in logits.items() if n != name]
            losses[f"loss_kl_{name}"] = sum(soft_kl(own, peer, self.temperature) for peer in peers)
        return losses
