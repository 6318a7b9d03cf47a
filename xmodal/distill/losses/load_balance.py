"""Load-balancing losses for a router (mixture-of-experts): keep every expert in use.

``kl``: KL(uniform ‖ mean gate probability over the batch). MST-Distill's code computes it with
``KLDivLoss(reduction="batchmean")`` on the 1-D vector of ways, which divides the KL by the number
of ways; ``per_way=True`` (the default for ``kl``) keeps that scaling.
``cv``: coefficient of variation (unbiased std / mean) of the per-expert importance, the summed
gate probability over the batch (Shazeer et al. 2017). It is scale-free, so ``per_way`` does not
apply: giving it with ``mode="cv"`` is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.distill.losses.checks import empty_loss
from xmodal.registry import MODELS

_MODES = ("kl", "cv")


@MODELS.register_module()
class LoadBalanceLoss(nn.Module):
    def __init__(self, mode: str = "kl", per_way: bool | None = None) -> None:
        super().__init__()
        mode = mode.lower()
        if mode not in _MODES:
            raise ValueError(f"LoadBalanceLoss: mode {mode!r}; expected one of {_MODES}")
        if mode == "cv" and per_way is not None:
            raise ValueError(f"LoadBalanceLoss: per_way={per_way} only applies to mode='kl' (the KL's division by "
                             f"the number of ways); mode='cv' is scale-free: leave per_way out")
        self.mode, self.per_way = mode, True if per_way is None else bool(per_way)

    def forward(self, gate_probs: torch.Tensor) -> torch.Tensor:
        """``gate_probs``: (B, ways), rows summing to 1."""
        if gate_probs.dim() != 2 or gate_probs.shape[1] == 0:
            raise ValueError(f"LoadBalanceLoss: expected (batch, ways) probabilities, got {tuple(gate_probs.shape)}")
        if gate_probs.shape[0] == 0:
            return empty_loss(gate_probs)
        probs = gate_probs.float()
        ways = probs.shape[1]
        if self.mode == "kl":
            mean = probs.mean(0)
            kl = (torch.log(torch.tensor(1.0 / ways)) - torch.log(mean)).sum() / ways  # Σ u (log u − log p̄)
            return kl / ways if self.per_way else kl
        importance = probs.sum(0)
        if ways == 1:
            return importance.new_zeros(())
        return importance.std() / importance.mean()
