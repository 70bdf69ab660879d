"""ResNet-18 / ResNet-50 (He et al. 2016, torchvision's v1.5 layout), RGB and DCT variants.

Self-contained (no torchvision). Registered names (:func:`freqdata.trainers.create_model`):

* ``resnet50``: Bottleneck ``[3, 4, 6, 3]``, width 64 (standard): 25,557,032 parameters
  for RGB at 1000 classes, exactly torchvision's ``resnet50()``.
* ``resnet18``: BasicBlock ``[2, 2, 2, 2]``, **compact by default**: ``width=32`` (stage
  widths 32, 64, 128, 256: ~1/4 of the compute and parameters) for CPU runs;
  ``width=64`` is the standard ResNet-18 (11,689,512 parameters at 1000 classes).

Variants differ only in the stem:

* ``input="rgb"``: ``stem`` = conv 7x7/2 (3 → width) + BN + ReLU + max-pool 3x3/2, so a
  ``(B, 3, 224, 224)`` image reaches ``layer1`` as ``(B, width, 56, 56)``.
* ``input="dct"`` (Xu et al., CVPR 2020): conv1/bn1/relu/maxpool dropped; ``stem`` is the
  identity (or the :class:`~freqdata.trainers.gate.ChannelGate`) and the ``(B, C, 56, 56)``
  cube (448-pixel source) goes straight into ``layer1``, whose first block takes C inputs:
  Bottleneck — its first 1x1 conv is ``C → width`` and its downsample 1x1 conv
  ``C → 4·width``; BasicBlock — its first 3x3 conv is ``C → width`` and, when
  ``C != width``, a projection shortcut (1x1 conv ``C → width`` + BN) is added (the
  standard ResNet-18 ``layer1`` has none because its input already has ``width`` channels).

``forward_features(x)`` → ``(B, num_features, h, w)`` (``h = H/32`` for RGB, ``Hb/8`` for
DCT); ``forward_head`` → global average pool + ``fc`` → ``(B, num_classes)`` logits.
Initialisation as torchvision (Kaiming normal, fan-out, for convs; BN weight 1, bias 0).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from .gate import ChannelGate
from .registry import register_model

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50"]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convs; ``(B, cin, H, W)`` → ``(B, planes, H/stride, W/stride)``."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(out + idt)


class Bottleneck(nn.Module):
    """1x1 → 3x3 (stride here, v1.5) → 1x1; ``(B, cin, H, W)`` → ``(B, 4·planes, H/s, W/s)``."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(y + idt)


class ResNet(nn.Module):
    """ResNet with an RGB or DCT stem (module docstring).

    ``block``: :class:`BasicBlock` or :class:`Bottleneck`; ``layers``: blocks per stage;
    ``width``: channels of the first stage (64 standard); ``in_channels``: 3 (RGB) or the
    cube's C (DCT); ``gate``: DCT only, a :class:`ChannelGate` on the input (``gate_tau``,
    ``gate_init_on`` go to it). ``forward`` ``(B, in_channels, H, W)`` float → ``(B,
    num_classes)`` logits.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        *,
        input: str = "rgb",
        in_channels: int = 3,
        num_classes: int = 1000,
        width: int = 64,
        gate: bool = False,
        gate_tau: float = 1.0,
        gate_init_on: float = 3.0,
    ) -> None:
        super().__init__()
        self.input = input
        self.in_channels = in_channels
        if input == "rgb":
            self.stem: nn.Module = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
                    bn=nn.BatchNorm2d(width),
                    act=nn.ReLU(inplace=True),
                    pool=nn.MaxPool2d(3, 2, 1),
                )
            )
            cin = width
        elif gate:
            self.stem = ChannelGate(in_channels, tau=gate_tau, init_on=gate_init_on)
            cin = in_channels
        else:
            self.stem = nn.Identity()
            cin = in_channels
        stages = []
        for i, n in enumerate(layers):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, stride if j == 0 else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = cin
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        gate_modules = set(map(id, self.stem.modules())) if gate else set()
        for m in self.modules():
            if id(m) in gate_modules:
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, in_channels, H, W)`` → the outputs of ``layer1 .. layer4`` (4 tensors; the
        last is :meth:`forward_features`), e.g. for an FPN. Strides relative to the input:
        4, 8, 16, 32 (RGB) or 1, 2, 4, 8 (DCT: 8, 16, 32, 64 in pixels of the image)."""
        x = self.stem(x)
        out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` → ``(B, num_features, h, w)``."""
        return self.forward_stages(x)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, num_features, h, w)`` → ``(B, num_classes)`` (``(B, num_features)`` if
        ``pre_logits``)."""
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def resnet18(width: int = 32, **kw: Any) -> ResNet:
    """Compact ResNet-18 (``width=32``; ``width=64`` is the standard one)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], width=width, **kw)


@register_model
def resnet50(width: int = 64, **kw: Any) -> ResNet:
    """ResNet-50 (standard width 64)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], width=width, **kw)
