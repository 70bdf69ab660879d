"""Colour transforms of DCT batches as exact linear maps of the YCbCr coefficients.

The coefficients are those of the level-shifted planes ``Y - 128``, ``Cb - 128``,
``Cr - 128`` (docs/conventions.md). torchvision's brightness, contrast and saturation are
affine in RGB, hence in YCbCr; without clipping they are, with luma ``Y``:

* **brightness** ``b`` (``adjust_brightness``, blend with black): ``Y -> b Y``, chroma
  ``(C - 128) -> b (C - 128)``;
* **contrast** ``c`` (``adjust_contrast``, blend with the image's mean grey ``m``):
  ``Y -> c Y + (1 - c) m``, chroma scaled by ``c``;
* **saturation** ``s`` (``adjust_saturation``, blend with the image's grey): luma unchanged,
  chroma scaled by ``s``;
* **hue** ``h`` in ``[-0.5, 0.5]``: a rotation of ``(Cb, Cr)`` by the angle ``2 pi h`` at every
  frequency (``Cb' = cos Cb - sin Cr``, ``Cr' = sin Cb + cos Cr``; positive ``h`` turns red
  towards yellow, as HSV hue does).

On coefficients every one is a scale of all channels of a component plus, for luma, an
offset of the DC coefficient ``Y0`` (``DC = 8 * mean(block - 128)``), so a whole jitter is one
per-sample linear map (:func:`adjust_colour`). Without clipping the four commute, so the
order torchvision draws for ``ColorJitter`` does not matter.

Where this differs from torchvision (stated in docs/loader.md, "Augmentation"):

* torchvision clamps to ``[0, 1]`` after every op; here nothing is clipped (out-of-gamut
  values stay, which also makes the ops commute and invertible);
* torchvision's grey is ``0.2989 R + 0.587 G + 0.114 B``, here it is the JPEG luma ``Y``
  (``0.299 R + ...``): at most 0.026 of a level apart;
* contrast's mean ``m`` is the mean luma over the cube's whole grid (from ``Y0``), including
  any encoder padding of a partial edge block;
* hue is a rotation in the CbCr plane, not torchvision's HSV hue shift (nonlinear); the angle
  is ``2 pi h`` as HSV's, but colours move along circles, not the HSV hexagon.

:func:`sharpen` is torchvision's ``adjust_sharpness`` defined per block: a 3x3 smoothing
``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`` applied inside each 8x8 block with half-sample
symmetric edges (which the DCT-II diagonalizes), then ``f * img + (1 - f) * blurred``: a gain
``f + (1 - f) H(v, u)`` per frequency, ``H = ((1 + 2 cos(pi v / 8)) (1 + 2 cos(pi u / 8)) +
4) / 13`` (``H(0, 0) = 1``: DC untouched). torchvision smooths across block edges and keeps
the image border.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from freqdata.augment.layout import as_channel_info
from freqdata.dct import BLOCK, LEVEL_SHIFT
from freqdata.errors import UsageError
from freqdata.transforms import ChannelInfo

__all__ = ["adjust_colour", "sharpen", "sharpness_gain"]

Factor = float | torch.Tensor | None


def _per_sample(v: Factor, b: int, like: torch.Tensor, neutral: float) -> torch.Tensor:
    if v is None:
        return torch.full((b,), neutral, dtype=like.dtype, device=like.device)
    return torch.as_tensor(v, dtype=like.dtype, device=like.device).expand(b)


def adjust_colour(
    x: torch.Tensor,
    channels: ChannelInfo | Sequence[str],
    brightness: Factor = None,
    contrast: Factor = None,
    saturation: Factor = None,
    hue: Factor = None,
) -> torch.Tensor:
    """Brightness, contrast, saturation and hue of ``(B, C, Hb, Wb)`` raw coefficients.

    Each factor is a float or a ``(B,)`` tensor (None = neutral: 1, 1, 1, 0); meanings as
    torchvision's ``adjust_*`` (module docstring). Returns float (float32 for integers), same
    shape. Brightness and contrast need the luma DC channel ``Y0``; a hue rotation needs the
    same coefficients stored for Cb and Cr.
    """
    info = as_channel_info(channels)
    xf = x if x.is_floating_point() else x.to(torch.float32)
    b = xf.shape[0]
    bri = _per_sample(brightness, b, xf, 1.0)
    con = _per_sample(contrast, b, xf, 1.0)
    sat = _per_sample(saturation, b, xf, 1.0)
    ang = _per_sample(hue, b, xf, 0.0) * (2 * math.pi)
    comp = torch.as_tensor(info.component, device=xf.device)
    y_dc = np.flatnonzero((info.component == 0) & (info.k == 0))
    out = xf.clone()
    luma = comp == 0
    out[:, luma] = xf[:, luma] * (bri * con)[:, None, None, None]
    if brightness is not None or contrast is not None:
        if len(y_dc) != 1:
            raise UsageError("brightness and contrast need the luma DC channel Y0")
        dc = int(y_dc[0])
        mean = LEVEL_SHIFT + xf[:, dc].mean((-2, -1)) / BLOCK  # mean luma pixel
        offset = bri * con * LEVEL_SHIFT + bri * (1 - con) * mean - LEVEL_SHIFT
        out[:, dc] += BLOCK * offset[:, None, None]
    if not bool((comp > 0).any()):
        return out
    scale = (bri * con * sat)[:, None, None]
    cb = np.flatnonzero(info.component == 1)
    cr = np.flatnonzero(info.component == 2)
    pairs_cr = {int(info.k[i]): int(i) for i in cr}
    if hue is None:
        chroma = torch.as_tensor(np.concatenate([cb, cr]), device=xf.device)
        out[:, chroma] = xf[:, chroma] * scale[..., None]
        return out
    if sorted(info.k[cb].tolist()) != sorted(pairs_cr):
        raise UsageError("a hue rotation needs the same coefficients stored for Cb and Cr")
    i_cb = torch.as_tensor(cb, device=xf.device)
    i_cr = torch.as_tensor([pairs_cr[int(info.k[i])] for i in cb], device=xf.device)
    cos = (torch.cos(ang)[:, None, None, None]) * scale[..., None]
    sin = (torch.sin(ang)[:, None, None, None]) * scale[..., None]
    xb, xr = xf[:, i_cb], xf[:, i_cr]
    out[:, i_cb] = cos * xb - sin * xr
    out[:, i_cr] = sin * xb + cos * xr
    return out


def sharpness_gain(channels: ChannelInfo | Sequence[str]) -> torch.Tensor:
    """``(C,)`` float64: the per-block smoothing's response ``H(v, u)`` of each channel."""
    info = as_channel_info(channels)
    hv = 1 + 2 * np.cos(np.pi * info.v / BLOCK)
    hu = 1 + 2 * np.cos(np.pi * info.u / BLOCK)
    return torch.as_tensor((hv * hu + 4) / 13)


def sharpen(
    x: torch.Tensor, channels: ChannelInfo | Sequence[str], factor: float | torch.Tensor
) -> torch.Tensor:
    """torchvision's ``adjust_sharpness(img, factor)`` per 8x8 block (module docstring).

    ``x`` ``(B, C, Hb, Wb)``; ``factor`` a float or ``(B,)`` (1 = identity, 0 = smoothed,
    2 = sharpened). Returns float, same shape. Exact for that definition.
    """
    xf = x if x.is_floating_point() else x.to(torch.float32)
    h = sharpness_gain(channels).to(device=xf.device, dtype=xf.dtype)
    f = torch.as_tensor(factor, dtype=xf.dtype, device=xf.device).expand(xf.shape[0])
    gain = f[:, None] + (1 - f[:, None]) * h[None, :]
    return xf * gain[:, :, None, None]
