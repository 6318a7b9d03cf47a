"""Capture intermediate outputs of a model by module path ("fusion.fc1") with forward hooks."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import torch
from torch import nn


class FeatureRecorder:
    """Records the output of each named module on every forward; ``remove()`` drops the hooks."""

    def __init__(self, model: nn.Module, paths: Iterable[str], owner: str = "model") -> None:
        modules = dict(model.named_modules())
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []
        for path in paths:
            if path not in modules:
                near = difflib.get_close_matches(path, [n for n in modules if n], n=5, cutoff=0.4)
                raise KeyError(f"{owner} has no module '{path}'; nearest module paths: {near or sorted(modules)[:10]}")
            self._handles.append(modules[path].register_forward_hook(self._make_hook(path)))

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
