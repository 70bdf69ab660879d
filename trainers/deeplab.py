"""A compact DeepLabv3+ (Chen et al., ECCV 2018) on the trainers' ResNet backbones, RGB or DCT.

``DeepLabV3Plus(num_classes, input="rgb"|"dct", in_channels=...)`` builds a backbone with
:func:`freqdata.trainers.create_model` (``resnet18``, compact width 32, by default; its
``fc`` is dropped) and adds:

* **Output stride** (``output_stride``, in *pixels of the image*; 16 by default): the
  stages whose stride would take the features past it get stride 1 and dilated 3x3
  convolutions instead (the "no stride, dilate" surgery of torchvision's
  ``replace_stride_with_dilation`` / CSAIL's ``_nostride_dilate``: the former strided conv
  gets dilation ``d/2``, the other 3x3 convs of the stage ``d``). RGB: ``layer4`` dilated
  by 2 (features at 1/16). DCT (input already at 1/8, one position per 8x8 block):
  ``layer3`` dilated by 2 and ``layer4`` by 4 (features at 1/16 of the image).
* **ASPP** on the last stage: a 1x1 branch, three 3x3 branches with atrous ``rates`` and an
  image-pooling branch (global mean → 1x1 conv + ReLU, no BatchNorm so a batch of one
  trains), concatenated, projected by 1x1 conv + BN + ReLU, dropout 0.1. The paper's rates
  (6, 12, 18) are for 33x33 features (513 crops at stride 16); the default ``(3, 6, 9)``
  keeps the same fractions of the 16x16 features of 256-pixel crops.
* **Decoder** with the low-level skip of ``layer1`` (1/4 of the image for RGB, 1/8 for DCT:
  the finest stage each backbone has): the skip is projected by 1x1 conv + BN + ReLU to
  ``low_channels``, the ASPP output is resampled to the skip's size, both are concatenated,
  two 3x3 conv + BN + ReLU, a 1x1 classifier, and a bilinear up-sampling of the logits to
  the image (``align_corners=False``).
* **Feature truncation** (``truncate=G``; after Chen, Chiu, Wu, "Spectral Analysis for
  Semantic Segmentation ...", arXiv:2012.14123): the decoder runs on a ``G x G`` grid
  instead of the skip's size. Both decoder inputs — the ``layer1`` features *before* their
  1x1 projection and the ASPP output — are resampled to ``G x G`` by :func:`resample`
  (adaptive average pooling when shrinking: a box low-pass; bilinear when growing), the
  decoder convs and the classifier run at ``G x G``, and the logits are up-sampled
  bilinearly to the image as usual. ``G = 2*nu_max + 1`` keeps roughly the band
  ``|f| <= nu_max`` cycles per image of the decoder's features (:func:`freqdata.masks.
  grid_size`). Truncation can be changed after training (the attribute ``truncate``): it
  has no parameters.

``forward(x)``: ``(B, C, h, w)`` float (RGB pixels, or DCT blocks ``h = H/8``) →
``(B, num_classes, H, W)`` logits at the image's pixel size (``H = 8h`` for DCT).
:func:`forward_flops` counts the FLOPs of one forward pass (torch's ``FlopCounterMode``:
2 per multiply-add of convolutions and matrix products; pooling, interpolation, BN and
activations are not counted).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from freqdata.errors import UsageError

from .registry import create_model

__all__ = ["ASPP", "DeepLabV3Plus", "forward_flops", "resample"]


def _conv_bn_relu(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, h, w)`` → ``(B, C, *size)``: adaptive average pooling when both sides shrink
    (or stay), bilinear interpolation (``align_corners=False``) otherwise; unchanged when
    the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: ``(B, cin, h, w)`` → ``(B, cout, h, w)``."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(cin, cout, 1)] + [_conv_bn_relu(cin, cout, 3, r) for r in rates]
        )
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            *_conv_bn_relu(cout * (len(rates) + 2), cout, 1), nn.Dropout(0.1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, 1))


def _dilate(stage: nn.Module, dilation: int) -> None:
    """Stride 2 → 1 in ``stage``; its strided 3x3 conv gets dilation ``dilation // 2``, the
    other 3x3 convs ``dilation`` (padding = dilation: same size)."""
    for m in stage.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if m.stride == (2, 2):
            m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                d = max(dilation // 2, 1)
                m.dilation, m.padding = (d, d), (d, d)
        elif m.kernel_size == (3, 3):
            m.dilation, m.padding = (dilation, dilation), (dilation, dilation)


class DeepLabV3Plus(nn.Module):
    """Compact DeepLabv3+ (module docstring).

    ``num_classes``: output channels (background included); ``input``: ``"rgb"`` or
    ``"dct"`` (``in_channels`` = the cube's C); ``backbone``: a registered ResNet name,
    ``width`` its stage-1 width; ``output_stride``: 8, 16 or 32 pixels; ``rates``: ASPP
    atrous rates; ``aspp_channels``, ``low_channels``, ``decoder_channels``: widths;
    ``truncate``: decoder grid ``G`` (None: the skip's own size).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        input: str = "rgb",
        in_channels: int | None = None,
        backbone: str = "resnet18",
        width: int = 32,
        output_stride: int = 16,
        rates: tuple[int, ...] = (3, 6, 9),
        aspp_channels: int = 128,
        low_channels: int = 32,
        decoder_channels: int = 128,
        truncate: int | None = None,
        **backbone_kw: Any,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise UsageError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if truncate is not None and truncate < 1:
            raise UsageError(f"truncate must be a positive grid size, got {truncate}")
        self.pixels_per_position = 8 if input == "dct" else 1  # image pixels per input position
        net = create_model(backbone, input=input, in_channels=in_channels, num_classes=1,
                           width=width, **backbone_kw)  # fmt: skip
        net.fc = nn.Identity()  # the classifier head is not used
        stride = 8 if input == "dct" else 4  # stride of layer1, in pixels
        dilation = 1
        for stage in (net.layer2, net.layer3, net.layer4):
            if stride * 2 > output_stride:
                dilation *= 2
                _dilate(stage, dilation)
            else:
                stride *= 2
        self.backbone = net
        low_in = width * type(net.layer1[-1]).expansion  # channels of layer1's output
        self.aspp = ASPP(net.num_features, aspp_channels, tuple(rates))
        self.low_proj = _conv_bn_relu(low_in, low_channels, 1)
        self.decoder = nn.Sequential(
            _conv_bn_relu(aspp_channels + low_channels, decoder_channels, 3),
            _conv_bn_relu(decoder_channels, decoder_channels, 3),
        )
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)
        self.truncate = truncate
        for m in (*self.aspp.modules(), *self.low_proj.modules(), *self.decoder.modules()):
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def decoder_size(self, low_size: tuple[int, int]) -> tuple[int, int]:
        """The grid the decoder runs on for a ``layer1`` output of ``low_size``."""
        return (self.truncate, self.truncate) if self.truncate else tuple(low_size)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_size = (x.shape[-2] * self.pixels_per_position, x.shape[-1] * self.pixels_per_position)
        low, _, _, high = self.backbone.forward_stages(x)
        size = self.decoder_size(tuple(low.shape[-2:]))
        low = self.low_proj(resample(low, size))
        high = resample(self.aspp(high), size)
        y = self.classifier(self.decoder(torch.cat([high, low], 1)))
        return F.interpolate(y, size=out_size, mode="bilinear", align_corners=False)


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of ``model(x)`` counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 per
    multiply-add; convolutions and matrix products only), in evaluation mode and without
    gradients; the model's training flag is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
