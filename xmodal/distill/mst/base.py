"""What stages 2 and 3 share: a student and teachers from the previous stage, plus masked experts."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from xmodal.distill.base import BaseDistiller, load_parts
from xmodal.distill.mst.experts import build_experts
from xmodal.distill.mst.members import architecture_of, build_member, previous_stage_checkpoint


class MaskedExpertsModel(BaseDistiller):
    """Builds ``student``, ``teachers`` (architectures only) and one MaskNet per masked layer
    (``masks``, ``experts``); with ``init_from`` (the previous stage's work dir) the student and
    teachers take that stage's weights, strictly."""

    stage = 0

    def __init__(self, student: dict, teachers: dict[str, dict], mask_layers: dict[str, list[str]],
                 mask_shapes: dict | None = None, hidden_factor: int = 2, num_heads: int = 3,
                 stack_masks: bool = False, init_from: str | None = None, teacher_cache: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(student, teachers, init_from=init_from, teacher_cache=teacher_cache,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.experts, self.masks = build_experts(self.teachers, mask_layers, mask_shapes, hidden_factor, num_heads,
                                                 stack_masks)

    def build_student(self, cfg: dict) -> nn.Module:
        return build_member("student", {"model": cfg})

    def build_teacher(self, name: str, spec: dict) -> nn.Module:
        return build_member(f"teacher '{name}'", {"model": architecture_of(spec)})

    def load_init_from(self, source: str | Path) -> None:
        load_parts(self, previous_stage_checkpoint(source, f"stage {self.stage}"), ("student.", "teachers."),
                   f"student and teachers of stage {self.stage - 1}")

    @property
    def expert_names(self) -> list[str]:
        return [e.name for e in self.experts]
