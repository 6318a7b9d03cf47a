"""Mixed precision on CPU: mmengine's AmpOptimWrapper is CUDA-only, so ``--amp`` on a CPU machine
uses this wrapper (bfloat16 autocast, no loss scaling, since bf16 has fp32's exponent range)."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from xmodal.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUBf16OptimWrapper(OptimWrapper):
    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            yield
