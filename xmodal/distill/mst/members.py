"""The models of an MST-Distill recipe and how each stage hands them to the next.

Every stage model keeps the same attribute names (``student``, ``teachers``, ``masks``, ``gate``),
so a stage's checkpoint holds keys like ``teachers.t_fusion.head.fc.weight`` that the next stage
loads by prefix.
"""

from __future__ import annotations

from pathlib import Path

import torch
from mmengine.config import Config
from torch import nn

from xmodal.engine.checkpoint import CheckpointError, load_checkpoint_file, load_weights, resolve_checkpoint
from xmodal.registry import MODELS

MASKS_FILE = "masks_best.pth"


def build_member(name: str, spec: dict) -> nn.Module:
    """``spec``: ``dict(model=<model config>)`` or ``dict(config="file.py")`` (its ``model``), with an
    optional ``checkpoint`` (file or work dir) to start from."""
    if not isinstance(spec, dict) or ("model" not in spec) == ("config" not in spec):
        raise ValueError(f"'{name}': expected dict(model=<model config>) or dict(config='file.py'), "
                         f"optionally with checkpoint=...; got {spec!r}")
    model_cfg = spec["model"] if "model" in spec else Config.fromfile(spec["config"]).model
    model = MODELS.build(model_cfg)
    if spec.get("checkpoint"):
        load_weights(model, resolve_checkpoint(spec["checkpoint"]), what=f"'{name}'")
    return model


def architecture_of(spec: dict) -> dict:
    """The model config of a member spec; stages 2 and 3 take the weights from the previous stage."""
    if not isinstance(spec, dict) or ("model" not in spec) == ("config" not in spec):
        raise ValueError(f"expected dict(model=<model config>) or dict(config='file.py'); got {spec!r}")
    return spec["model"] if "model" in spec else Config.fromfile(spec["config"]).model


def previous_stage_checkpoint(stage_dir: str | Path, what: str) -> Path:
    stage_dir = Path(stage_dir)
    if not stage_dir.is_dir():
        raise CheckpointError(f"{what} starts from the previous stage's output in {stage_dir}, which does not "
                              f"exist: run that stage first (tools/train.py CONFIG, or --stage N for one stage)")
    return resolve_checkpoint(stage_dir)


def load_masks(masks: nn.ModuleList, expert_names: list[str], stage_dir: str | Path) -> dict:
    """Load the per-mask best weights that stage 2 wrote (``masks_best.pth``)."""
    path = Path(stage_dir) / MASKS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} missing: stage 2 (mask training) has not finished; run it first")
    saved = load_checkpoint_file(path)
    if saved.get("experts") != expert_names:
        raise CheckpointError(f"{path}: masks were trained for experts {saved.get('experts')}, this config has "
                              f"{expert_names}; rerun stage 2 with this config")
    for i, mask in enumerate(masks):
        try:
            mask.load_state_dict(saved["masks"][i])
        except RuntimeError as err:
            raise CheckpointError(f"{path}: mask of {expert_names[i]} does not fit this config; hidden_factor, "
                                  f"num_heads and mask_shapes must be the same as in stage 2.\n{err}") from None
    return saved


def infer_num_classes(student: nn.Module) -> int:
    if isinstance(getattr(student, "num_classes", None), int):
        return student.num_classes
    head = getattr(getattr(student, "head", None), "fc", None)
    if isinstance(head, nn.Linear):
        return head.out_features
    raise ValueError("cannot read the number of classes from the student (no head.fc Linear); set num_classes")


@torch.no_grad()
def logits_of(model: nn.Module, batch: dict) -> torch.Tensor:
    return model(mode="tensor", **batch)["logits"]
