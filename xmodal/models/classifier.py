"""ModalityClassifier: per-modality encoders, optional fusion, a classification head.

The same class is the multimodal teacher (several encoders + fusion) and the single-modality
student (one encoder, no fusion); the config says which modalities it consumes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.models.base import TaskModel
from xmodal.registry import MODELS


@MODELS.register_module()
class ModalityClassifier(TaskModel):
    """Batch dict in, ``{"logits", "embedding"}`` out (``mode="tensor"``).

    Args:
        encoders: ``{modality: encoder config}``; each encoder exposes ``out_dim``.
        head: head config; ``in_dim`` is filled in from the encoder/fusion width.
        fusion: fusion config (``in_dims`` filled in); required with two or more encoders.
        label_smoothing: for the cross-entropy task loss.
    """

    output_keys = ("logits", "embedding")
    task_loss_names = ("loss_ce",)
    catalogue_input = "batch dict {modality: what its encoder takes, 'label': (B,)}"

    def __init__(self, encoders: dict, head: dict, fusion: dict | None = None, label_smoothing: float = 0.0,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not encoders:
            raise ValueError("ModalityClassifier: 'encoders' is empty; expected {modality: encoder config}")
        self.modalities = sorted(encoders)
        self.encoders = nn.ModuleDict({m: MODELS.build(cfg) for m, cfg in encoders.items()})
        in_dims = {m: enc.out_dim for m, enc in self.encoders.items()}
        if fusion is None:
            if len(encoders) > 1:
                raise ValueError(f"ModalityClassifier: {self.modalities} need a 'fusion' config to be combined")
            self.fusion = None
            width = in_dims[self.modalities[0]]
        else:
            self.fusion = MODELS.build({**fusion, "in_dims": in_dims})
            width = self.fusion.out_dim
        self.width = width  # the head's input width
        self.head = MODELS.build({**head, "in_dim": width})
        self.label_smoothing = label_smoothing

    def extract(self, batch: dict) -> dict[str, torch.Tensor]:
        missing = [m for m in self.modalities if m not in batch]
        if missing:
            raise KeyError(
                f"ModalityClassifier: the batch has no {missing}; it has {sorted(batch)}. The model consumes "
                f"{self.modalities}: add them to the dataset's 'modalities'."
            )
        features = {m: self.encoders[m](batch[m]) for m in self.modalities}
        embedding = features[self.modalities[0]] if self.fusion is None else self.fusion(features)
        return {"logits": self.head(embedding), "embedding": embedding}

    def supervised_loss(self, outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        return {"loss_ce": F.cross_entropy(outputs["logits"].float(), batch["label"],
                                           label_smoothing=self.label_smoothing)}

    @staticmethod
    def predictions(outputs: dict[str, torch.Tensor], batch: dict) -> list[dict]:
        """One record per sample (``label`` −1 for an unlabelled one)."""
        logits = outputs["logits"].detach().float().cpu()
        labels = batch["label"].cpu()
        index = batch.get("index", torch.arange(len(labels))).cpu()
        return [{"logits": logits[i], "label": int(labels[i]), "index": int(index[i])} for i in range(len(labels))]
