"""What stages 2 and 3 share: a student and teachers from the previous stage, plus masked experts."""

from __future__ import annotations

from mmengine.model import BaseModel
from torch import nn

from xmodal.distill.mst.experts import build_experts
from xmodal.distill.mst.members import architecture_of, build_member, load_parts, previous_stage_checkpoint


class MaskedExpertsModel(BaseModel):
    """Builds ``student``, ``teachers`` (architectures only) and one MaskNet per masked layer
    (``masks``, ``experts``); with ``init_from`` (the previous stage's work dir) the student and
    teachers take that stage's weights, strictly."""

    stage = 0

    def __init__(self, student: dict, teachers: dict[str, dict], mask_layers: dict[str, list[str]],
                 mask_shapes: dict | None = None, hidden_factor: int = 2, num_heads: int = 3,
                 stack_masks: bool = False, init_from: str | None = None, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = build_member("student", {"model": student})
        self.teachers = nn.ModuleDict({name: build_member(f"teacher '{name}'", {"model": architecture_of(spec)})
                                       for name, spec in teachers.items()})
        self.experts, self.masks = build_experts(self.teachers, mask_layers, mask_shapes, hidden_factor, num_heads,
                                                 stack_masks)
        if init_from is not None:
            load_parts(self, previous_stage_checkpoint(init_from, f"stage {self.stage}"), ("student.", "teachers."),
                       f"student and teachers of stage {self.stage - 1}")

    @property
    def expert_names(self) -> list[str]:
        return [e.name for e in self.experts]
