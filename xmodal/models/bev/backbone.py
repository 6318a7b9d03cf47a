"""A small SECOND-FPN BEV backbone and neck (Yan et al., Sensors 2018, "SECOND: Sparsely Embedded
Convolutional Detection"; the 2-D RPN/neck used by PointPillars and CenterPoint).

Stage i: a conv3×3 with stride ``layer_strides[i]`` then ``layer_nums[i]`` conv3×3, each conv followed by
BatchNorm (eps 1e-3, momentum 0.01 as in CenterPoint's configs) and ReLU; the stages run in sequence.
Neck: each stage's output is upsampled by a transposed conv (kernel = stride = ``upsample_strides[i]``)
+ BN + ReLU to ``upsample_channels[i]`` and the results are concatenated. Every stage is brought back to
the input resolution (cumulative stride = upsample stride) so the head and ``bev_high`` share the grid of
``bev_low``; odd sizes are cropped back after upsampling (cell j of a stride-2 map covers 2j and 2j + 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xmodal.registry import MODELS


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


@MODELS.register_module()
class SECONDFPNBackbone(nn.Module):
    """(B, ``in_channels``, H, W) -> (B, sum(``upsample_channels``), H, W)."""

    def __init__(self, in_channels: int = 64, out_channels: Sequence[int] = (64, 128, 128),
                 layer_nums: Sequence[int] = (2, 2, 2), layer_strides: Sequence[int] = (1, 2, 2),
                 upsample_strides: Sequence[int] = (1, 2, 4), upsample_channels: Sequence[int] = (64, 64, 64)) -> None:
        super().__init__()
        lengths = {len(out_channels), len(layer_nums), len(layer_strides), len(upsample_strides),
                   len(upsample_channels)}
        if len(lengths) != 1 or not out_channels:
            raise ValueError("SECONDFPNBackbone: out_channels, layer_nums, layer_strides, upsample_strides and "
                             "upsample_channels need one entry per stage")
        cumulative = 1
        for stride, up in zip(layer_strides, upsample_strides):
            cumulative *= int(stride)
            if cumulative != int(up):
                raise ValueError(f"SECONDFPNBackbone: upsample_strides {tuple(upsample_strides)} must equal the "
                                 f"cumulative layer_strides so every stage returns to the input grid")
        self.stages = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        c_in = in_channels
        for c_out, num, stride, up, c_up in zip(out_channels, layer_nums, layer_strides, upsample_strides,
                                                upsample_channels):
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), _bn(c_out),
                                       nn.ReLU(True)]
            for _ in range(num):
                layers += [nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), _bn(c_out), nn.ReLU(True)]
            self.stages.append(nn.Sequential(*layers))
            self.upsamples.append(nn.Sequential(nn.ConvTranspose2d(c_out, c_up, up, stride=up, bias=False), _bn(c_up),
                                                nn.ReLU(True)))
            c_in = c_out
        self.in_channels, self.out_channels = int(in_channels), int(sum(upsample_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        outs = []
        for stage, upsample in zip(self.stages, self.upsamples):
            x = stage(x)
            outs.append(upsample(x)[..., :height, :width])
        return torch.cat(outs, dim=1)
