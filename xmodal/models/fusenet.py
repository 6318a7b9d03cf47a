"""FuseNet-style RGB-D encoder-decoder for semantic segmentation (Hazirbas et al., ACCV 2016), the
NYU-Depth-V2 model family of MST-Distill (``FuseNet-I``, ``FuseNet-RGBbranch``, ``FuseNet-Dbranch``).

One class covers the three: ``modalities=("rgb", "depth")`` is the fusion teacher, ``("rgb",)`` and
``("depth",)`` the single-modality students. Each modality has a VGG16-shaped encoder of five
conv-BN-ReLU stages (widths 64-128-256-512-512, each followed by 2×2 max-pooling); with two
modalities the second (auxiliary) encoder runs on its own and, after every stage, its output is
averaged into the first (main) encoder's output before pooling. A SegNet-style decoder unpools
with the main encoder's pooling indices back to the input size and ends in per-pixel logits.

Module paths, and the official layer each stands for (the MST-Distill mask layers are marked *):

=============================  =================================================================
``after_fusion``               ``after_fusion_identity`` * (teacher; C5 × H/32 × W/32, 512×15×20)
``decoder.stage5``             ``CBR5_RGBD_DEC`` * / ``CBR5_RGB_DEC`` * / ``CBR5_D_DEC`` * (512×30×40)
``decoder.stage4`` … ``.stage1``  ``CBR4_*_DEC`` … ``CBR1_*_DEC`` (``decoder.stage1.0`` = ``CBR1_*_DEC.0``)
``encoders.rgb.stage<k>``      ``CBR<k>_RGB_ENC`` (``stage5``: ``CBR5_RGB_ENC`` *, 512×30×40)
``encoders.depth.stage<k>``    ``CBR<k>_DEPTH_ENC`` (``stage5``: ``CBR5_DEPTH_ENC`` *, 512×30×40)
=============================  =================================================================

An encoder stage's hook sees its output before the fusion average, as the official hooks do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.models.base import UNLABELLED, TaskModel
from xmodal.registry import MODELS

VGG16_WIDTHS = (64, 128, 256, 512, 512)
# conv layers per encoder stage (VGG16) and per decoder stage (mirror; stage 1 adds the classifier)
ENCODER_DEPTHS = (2, 2, 3, 3, 3)
DECODER_DEPTHS = (1, 2, 3, 3, 3)


def cbr(channels: Sequence[tuple[int, int]], momentum: float = 0.1) -> nn.Sequential:
    """Conv3×3-BatchNorm-ReLU for each (in, out) pair, in one Sequential (the official CBR blocks)."""
    layers: list[nn.Module] = []
    for c_in, c_out in channels:
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out, momentum=momentum), nn.ReLU(True)]
    return nn.Sequential(*layers)


class FuseNetEncoder(nn.Module):
    """Five CBR stages, each followed by 2×2 max-pooling (indices kept for the decoder); dropout
    after the pooling of stages 3-5."""

    def __init__(self, in_channels: int, widths: Sequence[int] = VGG16_WIDTHS, dropout: float = 0.4) -> None:
        super().__init__()
        c_in = in_channels
        for k, (width, depth) in enumerate(zip(widths, ENCODER_DEPTHS), start=1):
            setattr(self, f"stage{k}", cbr([(c_in, width)] + [(width, width)] * (depth - 1)))
            c_in = width
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.dropout = nn.Dropout(dropout)
        self.out_channels = c_in

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"stage{k}") for k in range(1, len(ENCODER_DEPTHS) + 1)]

    def forward(self, x: torch.Tensor, fuse: Sequence[torch.Tensor] | None = None) -> dict:
        """``fuse``: the auxiliary encoder's stage outputs, averaged into this encoder's before pooling.

        Returns ``bottleneck`` (pooled stage-5 output), the per-stage ``indices`` and pre-pooling
        ``sizes`` the decoder unpools with, and the stage outputs ``features`` (after fusion).
        """
        features, indices, sizes = [], [], []
        for k, stage in enumerate(self.stages):
            x = stage(x)
            if fuse is not None:
                x = (x + fuse[k]) / 2
            features.append(x)
            sizes.append(x.shape[-2:])
            x, idx = self.pool(x)
            indices.append(idx)
            if k >= 2:
                x = self.dropout(x)
        return {"bottleneck": x, "indices": indices, "sizes": sizes, "features": features}


class FuseNetDecoder(nn.Module):
    """Mirror of the encoder: unpool with its indices, then CBR stages 5 → 1; stage 1 ends in a
    3×3 conv to class logits. Dropout after decoder stages 5-3."""

    def __init__(self, num_classes: int, widths: Sequence[int] = VGG16_WIDTHS, dropout: float = 0.4) -> None:
        super().__init__()
        # stage k maps widths[k-1] to widths[k-2] in its last conv (stage 1 keeps widths[0])
        for k in range(len(widths), 1, -1):
            width, out = widths[k - 1], widths[k - 2]
            depth = DECODER_DEPTHS[k - 1]
            setattr(self, f"stage{k}", cbr([(width, width)] * (depth - 1) + [(width, out)]))
        self.stage1 = nn.Sequential(
            nn.Conv2d(widths[0], widths[0], 3, padding=1), nn.BatchNorm2d(widths[0], momentum=0.1), nn.ReLU(True),
            nn.Conv2d(widths[0], num_classes, 3, padding=1),
        )
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, indices: Sequence[torch.Tensor], sizes: Sequence[torch.Size]) -> torch.Tensor:
        for k in range(len(indices), 0, -1):
            # output_size restores odd sizes that pooling floored
            x = self.unpool(x, indices[k - 1], output_size=sizes[k - 1])
            x = getattr(self, f"stage{k}")(x)
            if k >= 3:
                x = self.dropout(x)
        return x


def official_init(module: nn.Module, gain: float = 0.02) -> None:
    """The initialisation the official models end up with: every conv Xavier-normal with gain 0.02
    and zero bias, every BatchNorm weight N(1, 0.02) and zero bias. (Their encoders first copy
    ImageNet VGG16 weights, but the init pass that follows overwrites those too.)"""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


@MODELS.register_module()
class FuseNetSegmenter(TaskModel):
    """Batch dict in, ``{"logits": (B, C, H, W), "embedding": (B, C5, H/32, W/32)}`` out.

    Args:
        modalities: the inputs, main branch first; with two, the second is fused into the first
            (``("rgb", "depth")`` is FuseNet-I; one modality gives a single-branch student).
        in_channels: channels per modality.
        num_classes: logits per pixel (NYU-Depth-V2: 41, void included).
        ignore_index: label value left out of the loss (NYU: 0, void); None: no pixel is ignored.
        width: multiplier on the VGG16 widths 64-128-256-512-512 (tests use a small one).
        dropout: probability of the encoder/decoder dropouts (official 0.4).
        init: ``"official"`` (see :func:`official_init`) or ``"pytorch"`` (the layers' defaults).
    """

    catalogue_input = "batch dict {modality: (B, C_m, H, W)} for each of modalities"

    output_keys = ("logits", "embedding")
    task_loss_names = ("loss_ce",)

    def __init__(self, modalities: Sequence[str] = ("rgb", "depth"), in_channels: dict[str, int] | None = None,
                 num_classes: int = 41, ignore_index: int | None = 0, width: float = 1.0, dropout: float = 0.4,
                 init: str = "official", data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.modalities = list(modalities)
        if not 1 <= len(self.modalities) <= 2:
            raise ValueError(f"FuseNetSegmenter: modalities={self.modalities}; expected one (a branch) or two "
                             "(main, auxiliary) modality names")
        in_channels = {"rgb": 3, "depth": 1, **(in_channels or {})}
        unknown = [m for m in self.modalities if m not in in_channels]
        if unknown:
            raise ValueError(f"FuseNetSegmenter: no in_channels for {unknown}; pass in_channels={{name: channels}}")
        if init not in ("official", "pytorch"):
            raise ValueError(f"FuseNetSegmenter: init={init!r}; expected 'official' or 'pytorch'")
        widths = [max(1, round(w * width)) for w in VGG16_WIDTHS]
        self.encoders = nn.ModuleDict({m: FuseNetEncoder(in_channels[m], widths, dropout) for m in self.modalities})
        self.after_fusion = nn.Identity()  # a named tap on the bottleneck (official after_fusion_identity)
        self.decoder = FuseNetDecoder(num_classes, widths, dropout)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        if init == "official":
            official_init(self)

    def extract(self, batch: dict) -> dict[str, torch.Tensor]:
        missing = [m for m in self.modalities if m not in batch]
        if missing:
            raise KeyError(f"FuseNetSegmenter: the batch has no {missing}; it has {sorted(batch)}. The model consumes "
                           f"{self.modalities}: add them to the dataset's 'modalities'.")
        main = self.modalities[0]
        fuse = None
        if len(self.modalities) == 2:
            fuse = self.encoders[self.modalities[1]](batch[self.modalities[1]])["features"]
        encoded = self.encoders[main](batch[main], fuse=fuse)
        bottleneck = self.after_fusion(encoded["bottleneck"])
        logits = self.decoder(bottleneck, encoded["indices"], encoded["sizes"])
        return {"logits": logits, "embedding": bottleneck}

    def supervised_loss(self, outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        """Per-pixel cross-entropy, averaged over the pixels that are neither ``ignore_index`` nor
        unlabelled (−1)."""
        logits = outputs["logits"].float()
        ignore = -100 if self.ignore_index is None else self.ignore_index
        label = batch["label"].long().masked_fill(batch["label"] == UNLABELLED, ignore)
        if not (label != ignore).any():  # mean over no pixels would be NaN
            return {"loss_ce": logits.sum() * 0.0}
        return {"loss_ce": F.cross_entropy(logits, label, ignore_index=ignore)}

    def predictions(self, outputs: dict[str, torch.Tensor], batch: dict) -> list[dict]:
        """One record per sample: the predicted and true maps (uint8 when they fit, so an evaluation
        batch stays small), the summed per-pixel NLL and the number of pixels it covers."""
        logits = outputs["logits"].detach().float()
        labels = batch["label"].to(logits.device).long()
        ignore = -100 if self.ignore_index is None else self.ignore_index
        nll = F.cross_entropy(logits, labels, ignore_index=ignore, reduction="none")
        valid = labels != ignore
        nll_sum = (nll * valid).flatten(1).sum(1).cpu()
        count = valid.flatten(1).sum(1).cpu()
        small = self.num_classes <= 256 and labels.min() >= 0 and labels.max() < 256
        dtype = torch.uint8 if small else torch.long
        pred = logits.argmax(1).to(dtype).cpu()
        labels = labels.to(dtype).cpu()
        index = batch.get("index", torch.arange(len(labels))).cpu()
        return [{"pred": pred[i], "label": labels[i], "index": int(index[i]), "nll_sum": float(nll_sum[i]),
                 "num_pixels": int(count[i])} for i in range(len(labels))]
