"""CrossEncoder: BLIP's image-text matching (ITM) model as a retrieval teacher.

``transformers.BlipForImageTextRetrieval``: a ViT image encoder, a BERT text encoder that
cross-attends to the image tokens, and a 2-way ITM head. A pair's score is the ITM log-odds
``logit(match) − logit(no match)``. This is more accurate than a cosine but needs one text-encoder
pass per (image, text) pair, so a distiller only asks it about the candidates the student mined.
The same model also has ITC projections (a dual encoder); they are used to embed for retrieval
evaluation and to pick the ITM training negatives.

Weights: ``pretrained`` is a local directory saved by ``save_pretrained`` (e.g. a copy of
``Salesforce/blip-itm-base-coco``), loaded with ``local_files_only``. Without weights, ``config``
gives ``BlipConfig`` arguments (tests and the demo use small ones). Tokenizer: ``dict(type="hf",
path=...)`` (the BERT tokenizer saved with the weights) or ``dict(type="clip", context_length=...)``
(open_clip's bundled BPE; the text config's ``vocab_size`` must be ≥ 49408).
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn

from xmodal.models.base import TaskModel
from xmodal.models.dual_encoder import DualEncoder, ImageNormalise, itc_loss, positives_mask
from xmodal.registry import MODELS

CLIP_VOCAB = 49408


def _build_blip(pretrained: str | None, config: dict | None):
    from transformers import BlipConfig, BlipForImageTextRetrieval

    if (pretrained is None) == (config is None):
        raise ValueError("CrossEncoder: give exactly one of pretrained=<local BLIP directory> or config=<BlipConfig "
                         "arguments>")
    if pretrained is not None:
        if not Path(pretrained).is_dir():
            raise FileNotFoundError(f"CrossEncoder: pretrained={pretrained!r} is not a directory; xmodal does not "
                                    f"download weights: save the BLIP ITM model locally (save_pretrained) first")
        return BlipForImageTextRetrieval.from_pretrained(pretrained, local_files_only=True)
    return BlipForImageTextRetrieval(BlipConfig(**config))


class _ClipTokenizer:
    def __init__(self, context_length: int) -> None:
        self.tokenizer = open_clip.SimpleTokenizer(context_length=context_length)

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.tokenizer(texts)
        return ids, (ids != 0).long()


class _HFTokenizer:
    def __init__(self, path: str, context_length: int) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.context_length = context_length

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.context_length,
                             return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]


@MODELS.register_module()
class CrossEncoder(TaskModel):
    modalities = ("image", "text")
    catalogue_input = "batch dict {'image': (B, 3, H, W), 'text': token ids (B, L)}"
    output_keys = ("image_embedding", "text_embedding", "logit_scale")
    task_loss_names = ("loss_itc", "loss_itm")

    def __init__(self, pretrained: str | None = None, config: dict | None = None, tokenizer: dict | None = None,
                 itm_weight: float = 1.0, data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.blip = _build_blip(pretrained, config)
        tok = dict(tokenizer or dict(type="clip", context_length=32))
        kind, length = tok.pop("type", "clip"), int(tok.pop("context_length", 32))
        if kind == "clip":
            if self.blip.config.text_config.vocab_size < CLIP_VOCAB:
                raise ValueError(f"CrossEncoder: the clip tokenizer needs text_config.vocab_size ≥ {CLIP_VOCAB}, "
                                 f"got {self.blip.config.text_config.vocab_size}")
            self.tokenizer = _ClipTokenizer(length)
        elif kind == "hf":
            self.tokenizer = _HFTokenizer(tok.pop("path", pretrained), length)
        else:
            raise ValueError(f"CrossEncoder: tokenizer type must be 'clip' or 'hf', got {kind!r}")
        self.normalise = ImageNormalise(OPENAI_DATASET_MEAN, OPENAI_DATASET_STD,
                                        self.blip.config.vision_config.image_size)
        self.itc_log_scale = nn.Parameter(torch.tensor(1 / 0.07).log())  # BLIP's ITC temperature 0.07
        self.itm_weight = float(itm_weight)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.itc_log_scale.exp().clamp(max=100.0)

    def _device(self) -> torch.device:
        return self.itc_log_scale.device

    def image_tokens(self, image: torch.Tensor) -> torch.Tensor:
        return self.blip.vision_model(pixel_values=self.normalise(image)).last_hidden_state

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("CrossEncoder: 'text' must be a list of strings")
        ids, mask = self.tokenizer(list(texts))
        return ids.to(self._device()), mask.to(self._device())

    def match_scores(self, image_tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ITM log-odds of each (image_tokens[i], text i) pair."""
        image_mask = torch.ones(image_tokens.shape[:-1], dtype=torch.long, device=image_tokens.device)
        hidden = self.blip.text_encoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=image_tokens,
                                        encoder_attention_mask=image_mask).last_hidden_state
        logits = self.blip.itm_head(hidden[:, 0, :]).float()
        return logits[:, 1] - logits[:, 0]

    def prepare(self, batch: dict) -> dict[str, torch.Tensor]:
        """What ``pair_scores`` needs: the image tokens (one vision pass per image) and the tokens."""
        ids, mask = self.tokenize(batch["text"])
        return {"image_tokens": self.image_tokens(batch["image"]), "input_ids": ids, "attention_mask": mask}

    def pair_scores(self, outputs: dict, image_rows: torch.Tensor, text_rows: torch.Tensor) -> torch.Tensor:
        return self.match_scores(outputs["image_tokens"][image_rows], outputs["input_ids"][text_rows],
                                 outputs["attention_mask"][text_rows])

    def extract(self, batch: dict) -> dict[str, torch.Tensor]:
        """ITC embeddings (plus the image tokens and text ids for ITM)."""
        out: dict[str, torch.Tensor] = {"logit_scale": self.logit_scale}
        if "image" in batch:
            tokens = self.image_tokens(batch["image"])
            out["image_tokens"] = tokens
            out["image_embedding"] = F.normalize(self.blip.vision_proj(tokens[:, 0, :]).float(), dim=-1)
        if "text" in batch:
            ids, mask = self.tokenize(batch["text"])
            hidden = self.blip.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            out.update(input_ids=ids, attention_mask=mask,
                       text_embedding=F.normalize(self.blip.text_proj(hidden[:, 0, :]).float(), dim=-1))
        return out

    def supervised_loss(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        """BLIP's recipe: ITC, plus ITM on the positive pairs and on one hard negative per image and
        per text, drawn in proportion to the ITC similarity (same-image rows excluded)."""
        image_index = batch.get("image_index", torch.arange(len(batch["text"]), device=self._device()))
        losses = {"loss_itc": itc_loss(outputs["image_embedding"], outputs["text_embedding"], outputs["logit_scale"],
                                       image_index)}
        if self.itm_weight:
            b = len(image_index)
            same = positives_mask(image_index)
            if bool(same.all()):
                return losses  # no negative exists in this batch
            with torch.no_grad():
                sim = (outputs["image_embedding"] @ outputs["text_embedding"].t()) * outputs["logit_scale"]
                weights = torch.softmax(sim, dim=1).masked_fill(same, 0) + (~same).float() * 1e-8
                neg_text = torch.multinomial(weights, 1).squeeze(1)
                weights_t = torch.softmax(sim.t(), dim=1).masked_fill(same, 0) + (~same).float() * 1e-8
                neg_image = torch.multinomial(weights_t, 1).squeeze(1)
            rows = torch.arange(b, device=same.device)
            has_neg = ~same.all(1)
            image_rows = torch.cat([rows, rows[has_neg], neg_image[has_neg]])
            text_rows = torch.cat([rows, neg_text[has_neg], rows[has_neg]])
            labels = torch.cat([torch.ones(b), torch.zeros(2 * int(has_neg.sum()))]).to(sim.device)
            scores = self.pair_scores(outputs, image_rows, text_rows)
            losses["loss_itm"] = self.itm_weight * F.binary_cross_entropy_with_logits(scores, labels)
        return losses

    predictions = staticmethod(DualEncoder.predictions)
