"""DualHeadClassifier: a ModalityClassifier with a second, auxiliary classification head.

Two losses in the zoo train a student with two heads on one shared feature, so that cross-entropy
and distillation gradients do not fight over one linear layer:

- DHO (Kang et al., 2025): the main head learns from labels, the auxiliary head from the teacher
  (``DHOLoss``); predictions mix the two heads' probabilities,
  ``α·softmax(z_main) + (1 − α)·softmax(z_aux / β)`` (α weighs the main head, as in the official
  DHO code), with α, β chosen on the validation split by ``DualHeadCombinerHook``.
- Dual-head KD (``DualHeadKDLoss``): the auxiliary head absorbs the logit-matching loss and is
  dropped at inference (α = 1, the default).

Outputs (``mode="tensor"``): ``logits`` (the mixed prediction, as log-probabilities), ``logits_main``,
``logits_aux`` and ``embedding``. The task loss is cross-entropy on the main head; labels of −1
mark unlabelled samples and are skipped (by :class:`~xmodal.models.base.TaskModel`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from xmodal.models.classifier import ModalityClassifier
from xmodal.registry import MODELS


def mix_heads(main: torch.Tensor, aux: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """log(α·softmax(main) + (1 − α)·softmax(aux / β)), computed in log space; α is the main head's
    weight, as in the official DHO evaluation."""
    if not 0.0 <= alpha <= 1.0 or not beta > 0:
        raise ValueError(f"mix_heads: expected 0 ≤ alpha ≤ 1 and beta > 0, got alpha={alpha}, beta={beta}")
    log_main = F.log_softmax(main.float(), dim=1)
    if alpha == 1.0:
        return log_main
    log_aux = F.log_softmax(aux.float() / beta, dim=1)
    if alpha == 0.0:
        return log_aux
    return torch.logaddexp(log_main + math.log(alpha), log_aux + math.log(1 - alpha))


@MODELS.register_module()
class DualHeadClassifier(ModalityClassifier):
    """Args as :class:`ModalityClassifier`, plus ``aux_head`` (defaults to a copy of ``head``) and
    the inference mix ``combine_alpha`` (weight of the main head) / ``combine_beta`` (the auxiliary
    head's temperature); both are buffers, so a tuned mix is saved with the weights. Checkpoints
    written before α meant the main head's weight (module version 1) are converted on load."""

    output_keys = ("logits", "logits_main", "logits_aux", "embedding")
    _version = 2  # 2: combine_alpha weighs the main head (1: it weighed the auxiliary head)

    def __init__(self, encoders: dict, head: dict, aux_head: dict | None = None, fusion: dict | None = None,
                 combine_alpha: float = 1.0, combine_beta: float = 1.0, label_smoothing: float = 0.0,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(encoders, head, fusion=fusion, label_smoothing=label_smoothing,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.aux_head = MODELS.build({**(aux_head or head), "in_dim": self.width})
        self.register_buffer("combine_alpha", torch.tensor(float(combine_alpha)))
        self.register_buffer("combine_beta", torch.tensor(float(combine_beta)))
        mix_heads(torch.zeros(1, 2), torch.zeros(1, 2), float(combine_alpha), float(combine_beta))  # validates

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs) -> None:
        key = prefix + "combine_alpha"
        if local_metadata.get("version", 2) < 2 and key in state_dict:
            state_dict[key] = 1.0 - state_dict[key]  # version 1 stored the auxiliary head's weight
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def set_combiner(self, alpha: float, beta: float) -> None:
        mix_heads(torch.zeros(1, 2), torch.zeros(1, 2), alpha, beta)
        self.combine_alpha.fill_(alpha)
        self.combine_beta.fill_(beta)

    def extract(self, batch: dict) -> dict[str, torch.Tensor]:
        outputs = super().extract(batch)
        main = outputs.pop("logits")
        aux = self.aux_head(outputs["embedding"])
        mixed = mix_heads(main, aux, float(self.combine_alpha), float(self.combine_beta))
        return {"logits": mixed, "logits_main": main, "logits_aux": aux, "embedding": outputs["embedding"]}

    def supervised_loss(self, outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        """Cross-entropy on the main head; the auxiliary head learns from the teacher alone."""
        return {"loss_ce": F.cross_entropy(outputs["logits_main"].float(), batch["label"],
                                           label_smoothing=self.label_smoothing)}
