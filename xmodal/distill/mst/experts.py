"""Specialised teachers: a frozen teacher with a MaskNet on one of its layers.

``mask_layers=dict(t_fusion=["fusion.fc1", "head.fc"], t_audio=[...])`` gives one expert per
(teacher, layer), named ``"t_fusion/fusion.fc1"``. With ``stack_masks=True`` an expert also keeps
the masks of the same teacher's earlier layers on (the official stage-3 behaviour, where hooks
pile up); by default each expert carries its own mask only, as the paper describes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from xmodal.distill.mst.masknet import apply_mask, build_masknet, feature_spec
from xmodal.distill.recorder import find_module


@dataclasses.dataclass(frozen=True)
class Expert:
    name: str
    teacher: str
    masks: tuple[tuple[str, int], ...]  # (module path, index into the MaskNet list) active for this expert


def build_experts(teachers: nn.ModuleDict, mask_layers: dict[str, list[str]], mask_shapes: dict | None = None,
                  factor: int = 2, num_heads: int = 3, stack_masks: bool = False
                  ) -> tuple[list[Expert], nn.ModuleList]:
    if not mask_layers:
        raise ValueError("mask_layers is empty; expected {teacher name: [module path, ...]}")
    mask_shapes = mask_shapes or {}
    experts, masks = [], nn.ModuleList()
    for teacher_name, paths in mask_layers.items():
        if teacher_name not in teachers:
            raise KeyError(f"mask_layers names teacher '{teacher_name}'; the teachers are {sorted(teachers)}")
        if isinstance(paths, str) or not paths:
            raise ValueError(f"mask_layers['{teacher_name}'] must be a non-empty list of module paths")
        active: list[tuple[str, int]] = []
        for path in paths:
            owner = f"mask_layers['{teacher_name}']: teacher '{teacher_name}'"
            module = find_module(teachers[teacher_name], path, owner)
            _warn_if_norm_follows(teachers[teacher_name], path, module, owner)
            shape = mask_shapes.get(teacher_name, {}).get(path)
            # a (C, 1, 1) map is a vector, as in the official get_MSTmodules
            channels, is_2d = ((shape[0], len(shape) == 3 and tuple(shape[1:]) != (1, 1)) if shape
                               else feature_spec(module, owner + f" '{path}'"))
            masks.append(build_masknet(channels, is_2d, factor, num_heads))
            own = (path, len(masks) - 1)
            active = [*active, own] if stack_masks else [own]
            experts.append(Expert(f"{teacher_name}/{path}", teacher_name, tuple(active)))
    return experts, masks


def _warn_if_norm_follows(teacher: nn.Module, path: str, module: nn.Module, owner: str) -> None:
    """A mask on a convolution that feeds a normalisation layer is turned into a shift by the norm's
    statistics (docs/mst_distill.md, "Where to put a mask")."""
    parent_path, _, name = path.rpartition(".")
    parent = find_module(teacher, parent_path) if parent_path else teacher
    if not isinstance(module, nn.Conv2d | nn.Conv1d) or not isinstance(parent, nn.Sequential):
        return
    names = [n for n, _ in parent.named_children()]
    following = parent[names.index(name) + 1] if names.index(name) + 1 < len(names) else None
    if isinstance(following, nn.modules.batchnorm._BatchNorm | nn.GroupNorm | nn.LayerNorm):
        nxt = f"{parent_path}.{names[names.index(name) + 1]}" if parent_path else names[names.index(name) + 1]
        warnings.warn(f"{owner} '{path}': a {type(module).__name__} followed by {type(following).__name__}; the "
                      f"norm turns a mask's scaling into a shift and can break the expert before training. Mask "
                      f"'{nxt}' instead (docs/mst_distill.md, 'Where to put a mask')", stacklevel=3)


@contextlib.contextmanager
def masks_on(teacher: nn.Module, expert: Expert, masks: nn.ModuleList) -> Iterator[None]:
    """Forward hooks multiplying the expert's masks into their layers' outputs; removed on exit."""
    handles = []
    try:
        for path, index in expert.masks:
            net = masks[index]
            handles.append(find_module(teacher, path).register_forward_hook(
                lambda _m, _i, out, net=net: apply_mask(out, net(out))))
        yield
    finally:
        for handle in handles:
            handle.remove()


def expert_logits(teachers: nn.ModuleDict, masks: nn.ModuleList, expert: Expert, batch: dict) -> torch.Tensor:
    teacher = teachers[expert.teacher]
    with masks_on(teacher, expert, masks):
        return teacher(mode="tensor", **batch)["logits"]
