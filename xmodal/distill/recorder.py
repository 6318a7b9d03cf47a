"""Capture intermediate outputs of a model by module path ("fusion.fc1") with forward hooks."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import torch
from torch import nn


def find_module(model: nn.Module, path: str, owner: str = "model") -> nn.Module:
    """The submodule at ``path``; an unknown path raises KeyError listing the nearest module paths."""
    modules = dict(model.named_modules())
    if path not in modules or not path:
        near = difflib.get_close_matches(path, [n for n in modules if n], n=5, cutoff=0.4)
        raise KeyError(f"{owner} has no module '{path}'; nearest module paths: {near or sorted(modules)[1:11]}")
    return modules[path]


class FeatureRecorder:
    """Records the output of each named module on every forward; ``remove()`` drops the hooks."""

    def __init__(self, model: nn.Module, paths: Iterable[str], owner: str = "model") -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []
        for path in paths:
            self._handles.append(find_module(model, path, owner).register_forward_hook(self._make_hook(path)))

    def _make_hook(self, path: str):
        def hook(_module, _inputs, output):
            self.outputs[path] = output

        return hook

    def pop(self) -> dict[str, torch.Tensor]:
        outputs, self.outputs = self.outputs, {}
        return outputs

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
