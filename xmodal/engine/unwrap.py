"""The model inside a DDP / mmengine wrapper: a leaf helper, so hooks, distillers and tools can reach
the model without importing one another."""

from __future__ import annotations

from mmengine.model import is_model_wrapper
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """``model.module`` for a wrapped model (DDP, MMDistributedDataParallel), else ``model`` itself."""
    return model.module if is_model_wrapper(model) else model
