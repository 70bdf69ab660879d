"""MobileNetV2 (Sandler et al. 2018, torchvision's layout), RGB and DCT variants.

Self-contained (no torchvision). Registered as ``mobilenetv2``: width multiplier 1.0,
3,504,872 parameters for RGB at 1000 classes, exactly torchvision's ``mobilenet_v2()``.

* ``input="rgb"``: ``stem`` = conv 3x3/2 (3 → 32) + BN + ReLU6: ``(B, 3, 224, 224)`` →
  ``(B, 32, 112, 112)``.
* ``input="dct"`` (Xu et al., CVPR 2020): the first conv is dropped; ``stem`` is the
  identity (or the :class:`~freqdata.trainers.gate.ChannelGate`) and the ``(B, C, 112, 112)``
  cube (896-pixel source) enters the first inverted-residual block (expansion 1), whose
  depthwise 3x3 conv then runs on C channels and whose projection is ``C → 16``.

``forward_features`` → ``(B, 1280, h, w)`` (after the final 1x1 conv + BN + ReLU6);
``forward_head`` → global average pool + dropout 0.2 + linear. Initialisation as
torchvision (Kaiming normal fan-out for convs, N(0, 0.01) for the linear layer).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .gate import ChannelGate
from .registry import register_model

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenetv2"]

# t (expansion), c (channels), n (blocks), s (stride of the first block)
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand 1x1 (if ``t > 1``) → depthwise 3x3 → project 1x1 (linear); residual when
    ``stride == 1`` and ``cin == cout``. ``(B, cin, H, W)`` → ``(B, cout, H/s, W/s)``."""

    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = round(cin * t)
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if t != 1:
            layers.append(_conv_bn_act(cin, hidden, 1))
        layers += [
            _conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with an RGB or DCT stem (module docstring). ``forward`` ``(B,
    in_channels, H, W)`` float → ``(B, num_classes)`` logits."""

    def __init__(
        self,
        *,
        input: str = "rgb",
        in_channels: int = 3,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        gate: bool = False,
        gate_tau: float = 1.0,
        gate_init_on: float = 3.0,
    ) -> None:
        super().__init__()
        self.input = input
        self.in_channels = in_channels
        first = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        if input == "rgb":
            self.stem: nn.Module = _conv_bn_act(in_channels, first, 3, 2)
            cin = first
        else:
            self.stem = (
                ChannelGate(in_channels, tau=gate_tau, init_on=gate_init_on)
                if gate
                else nn.Identity()
            )
            cin = in_channels
        blocks: list[nn.Module] = []
        for t, c, n, s in SETTINGS:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        blocks.append(_conv_bn_act(cin, last, 1))
        self.blocks = nn.Sequential(*blocks)
        self.num_features = last
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        gate_modules = set(map(id, self.stem.modules())) if gate else set()
        for m in self.modules():
            if id(m) in gate_modules:
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` → ``(B, 1280, h, w)``."""
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, 1280, h, w)`` → ``(B, num_classes)`` (``(B, 1280)`` if ``pre_logits``)."""
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def mobilenetv2(**kw: Any) -> MobileNetV2:
    """MobileNetV2, width multiplier 1.0 (``width_mult=`` to change it)."""
    return MobileNetV2(**kw)
