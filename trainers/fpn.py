"""A small Feature Pyramid Network (Lin et al., CVPR 2017) over the compact ResNet's stages.

:class:`FPN`: for stage outputs ``C_i`` (finest first) a lateral 1x1 conv to ``channels``,
the top-down path (nearest 2x upsampling of the coarser level, added), and a 3x3 output
conv per level: ``P_i``, all with ``channels`` channels, finest first. No extra pooled
level (the RoI heads only need the four).

:class:`MaskBackbone` = a registered ResNet (:func:`freqdata.trainers.create_model`, RGB or
DCT stem; :meth:`ResNet.forward_stages`) + :class:`FPN`. Its ``strides`` are the levels'
strides in **image pixels**: RGB 4, 8, 16, 32 (the stem halves twice); DCT 8, 16, 32, 64
(the cube's 8x8 blocks enter ``layer1`` directly). ``levels`` = ``log2(stride)`` (Mask
R-CNN's level numbering: P2 has stride 4).

Initialisation: Kaiming uniform with ``a=1`` (detectron2's ``c2_xavier_fill``), zero bias.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from freqdata.errors import UsageError

from .registry import create_model

__all__ = ["FPN", "MaskBackbone"]


class FPN(nn.Module):
    """``forward(list of (B, in_channels[i], H_i, W_i), finest first)`` → list of
    ``(B, channels, H_i, W_i)`` (same order). Each level must be twice the size of the next
    coarser one (up to rounding: the upsampled map is resized to the finer level's size)."""

    def __init__(self, in_channels: list[int], channels: int = 128) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1)
                                    for _ in in_channels)  # fmt: skip
        self.channels = channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.lateral):
            raise UsageError(f"FPN built for {len(self.lateral)} levels, got {len(feats)}")
        top = self.lateral[-1](feats[-1])
        out = [self.output[-1](top)]
        for i in range(len(feats) - 2, -1, -1):
            lat = self.lateral[i](feats[i])
            top = lat + F.interpolate(top, size=lat.shape[-2:], mode="nearest")
            out.insert(0, self.output[i](top))
        return out


class MaskBackbone(nn.Module):
    """Compact ResNet (``model``, ``width``; ``input`` ``"dct"`` with ``in_channels`` C, or
    ``"rgb"``) + :class:`FPN` with ``channels`` channels.

    ``forward(x)`` → list of 4 feature maps ``(B, channels, H / s, W / s)`` for
    ``s`` in :attr:`strides` (image pixels; for DCT input ``x`` is ``(B, C, H/8, W/8)``).
    """

    def __init__(
        self,
        input: str = "dct",
        in_channels: int | None = None,
        *,
        model: str = "resnet18",
        width: int | None = None,
        channels: int = 128,
    ) -> None:
        super().__init__()
        kw = {} if width is None else {"width": width}
        self.body = create_model(model, input=input, in_channels=in_channels, num_classes=1, **kw)
        self.body.fc = nn.Identity()  # no classifier: only the stages are used
        if not hasattr(self.body, "forward_stages"):
            raise UsageError(f"model {model!r} has no forward_stages (use a ResNet)")
        w = self.body.layer1[0].conv1.out_channels
        mult = self.body.num_features // (8 * w)  # block expansion (1 or 4)
        self.fpn = FPN([w * mult * 2**i for i in range(4)], channels)
        first = 4 if input == "rgb" else 8
        self.strides = [first * 2**i for i in range(4)]
        self.levels = [int(math.log2(s)) for s in self.strides]
        self.channels = channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.fpn(self.body.forward_stages(x))
