"""DualEncoder: an open_clip image tower and text tower scored by cosine similarity (CLIP / ITC).

The model is built with ``open_clip.create_model(name, pretrained=...)``: an open_clip model name
(``"ViT-B-32"``) with ``pretrained=None`` (random init) or a local weights file, or one of xmodal's
small configs in ``open_clip_configs/`` (``xmodal-tiny-clip`` for tests, ``xmodal-small-clip`` and
``xmodal-base-clip`` for the retrieval demo). Nothing is downloaded: a pretrained *tag* needs the
weights file given as a path.

Batch: ``image`` (B, 3, S, S) in [0, 1] (normalised here with the model's mean/std), ``text`` (a
list of B strings, tokenised here), ``image_index`` (which image each row shows; rows of the same
image are positives of each other). Evaluation batches may carry only ``image`` or only ``text``.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from xmodal.models.base import ExportGraph, TaskModel
from xmodal.registry import MODELS

open_clip.add_model_config(Path(__file__).parent / "open_clip_configs")


def positives_mask(image_index: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: row i and column j show the same image."""
    return image_index.view(-1, 1) == image_index.view(1, -1)


def itc_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor,
             image_index: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's symmetric contrastive loss on L2-normalised embeddings. Rows of the same image (several
    captions of one image in a batch) share the target mass, as in BLIP's ITC, instead of being
    pushed apart as negatives."""
    logits = logit_scale * image_emb.float() @ text_emb.float().t()
    if image_index is None:
        targets = torch.eye(len(logits), device=logits.device)
    else:
        targets = positives_mask(image_index).float()
        targets = targets / targets.sum(1, keepdim=True)
    i2t = -(F.log_softmax(logits, dim=1) * targets).sum(1).mean()
    t2i = -(F.log_softmax(logits.t(), dim=1) * targets.t()).sum(1).mean()
    return (i2t + t2i) / 2


class ImageNormalise(nn.Module):
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], size: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(image.shape)}")
        if image.shape[-2:] != (self.size, self.size):
            image = F.interpolate(image.float(), size=(self.size, self.size), mode="bilinear", antialias=True,
                                  align_corners=False)
        return (image.float() - self.mean) / self.std


class ImageTower(nn.Module):
    """Images in, L2-normalised image embeddings out: the image graph of an ONNX export."""

    def __init__(self, model: DualEncoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(image)


class TextTower(nn.Module):
    """Token ids in (the tokenizer runs outside the graph), L2-normalised text embeddings out."""

    def __init__(self, model: DualEncoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.clip.encode_text(text).float(), dim=-1)


@MODELS.register_module()
class DualEncoder(TaskModel):
    modalities = ("image", "text")
    catalogue_input = "batch dict {'image': (B, 3, H, W), 'text': token ids (B, L)}"
    output_keys = ("image_embedding", "text_embedding", "logit_scale")
    task_loss_names = ("loss_itc",)

    def __init__(self, model_name: str, pretrained: str | None = None, context_length: int | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if pretrained is not None and not Path(pretrained).is_file():
            raise FileNotFoundError(f"DualEncoder: pretrained={pretrained!r} is not a file; xmodal does not download "
                                    f"weights: give the path of a local open_clip checkpoint, or None")
        if model_name not in open_clip.list_models():
            raise KeyError(f"DualEncoder: unknown open_clip model {model_name!r}; xmodal's own: "
                           f"{[m for m in open_clip.list_models() if m.startswith('xmodal')]}")
        self.model_name = model_name
        self.clip = open_clip.create_model(model_name, pretrained=pretrained, force_context_length=context_length)
        self.tokenizer = open_clip.get_tokenizer(model_name, context_length=context_length)
        cfg = self.clip.visual.preprocess_cfg
        self.normalise = ImageNormalise(cfg["mean"], cfg["std"], cfg["size"][0])

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp().clamp(max=100.0)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("DualEncoder: 'text' must be a list of strings")
        return self.tokenizer(list(texts)).to(self.clip.logit_scale.device)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_image(self.normalise(image)).float(), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.clip.encode_text(self.tokenize(texts)).float(), dim=-1)

    def extract(self, batch: dict) -> dict[str, torch.Tensor]:
        if "image" not in batch and "text" not in batch:
            raise KeyError(f"DualEncoder: the batch has neither 'image' nor 'text'; it has {sorted(batch)}")
        out = {"logit_scale": self.logit_scale}
        if "image" in batch:
            out["image_embedding"] = self.encode_image(batch["image"])
        if "text" in batch:
            out["text_embedding"] = self.encode_text(batch["text"])
        return out

    def pair_scores(self, outputs: dict, image_rows: torch.Tensor, text_rows: torch.Tensor) -> torch.Tensor:
        """Scores (logit scale × cosine) of the pairs (image_rows[i], text_rows[i]) of a batch, from its
        ``extract`` outputs; the interface a retrieval teacher offers."""
        img, txt = outputs["image_embedding"][image_rows], outputs["text_embedding"][text_rows]
        return outputs["logit_scale"] * (img * txt).sum(-1)

    def supervised_loss(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        return {"loss_itc": itc_loss(outputs["image_embedding"], outputs["text_embedding"], outputs["logit_scale"],
                                     batch.get("image_index"))}

    @staticmethod
    def predictions(outputs: dict, batch: dict) -> list[dict]:
        n = len(batch["image"]) if "image" in batch else len(batch["text"])
        index = batch.get("index", torch.arange(n)).cpu()
        image_index = batch.get("image_index", index).cpu()
        records = []
        for i in range(n):
            record = {"image_index": int(image_index[i])}
            if "image_embedding" in outputs:
                record["image_embedding"] = outputs["image_embedding"][i].detach().cpu()
            if "text_embedding" in outputs:
                record["text_embedding"] = outputs["text_embedding"][i].detach().cpu()
                record["text_index"] = int(index[i])
            records.append(record)
        return records

    # -- ONNX export: two towers, so a gallery can be embedded without the text side and vice versa ---------
    def export_inputs(self) -> list[str]:
        return ["image", "text"]

    def export_suffixes(self) -> list[str]:
        return [".image", ".text"]

    def export_graphs(self, batch: dict) -> list[ExportGraph]:
        tokens = self.tokenize(list(batch["text"]))
        info = {"xmodal.open_clip_model": self.model_name, "xmodal.context_length": str(tokens.shape[1]),
                "xmodal.logit_scale": f"{float(self.logit_scale.detach()):.6g}"}
        return [ExportGraph(".image", ImageTower(self), {"image": batch["image"].float()}, ["image_embedding"], info),
                ExportGraph(".text", TextTower(self), {"text": tokens}, ["text_embedding"], info)]
