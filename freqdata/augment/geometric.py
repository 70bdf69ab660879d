"""Exact geometric transforms of DCT batches: flips, transpose, rot90, block translation.

All act on raw coefficients ``(B, C, Hb, Wb)`` (before normalization) and are exact: they
equal the block DCT of the transformed pixels when the image is whole blocks (stores always
hold whole blocks; a padded edge moves with the flip as in
:func:`freqdata.transforms.hflip`). An 8-sample block mirrored has DCT-II coefficients
``(-1)^f X[f]``, and the transpose of a block swaps ``u`` and ``v``:

* :func:`flip` — ``axis="h"`` (= :func:`freqdata.transforms.hflip`: block columns mirrored,
  odd ``u`` negated) or ``axis="v"`` (block rows mirrored, odd ``v`` negated);
* :func:`transpose` — block grid transposed and channel ``(v, u)`` taken from ``(u, v)``.
  Exact when the channel set is closed under ``u <-> v`` (``all``, ``dctnet-6/24/48``, a
  ``zigzag-Y-C`` that ends on a complete anti-diagonal); otherwise (``dctnet-32``'s and
  ``dctnet-64``'s chroma) a channel whose transpose is not stored becomes 0: the result is
  the stored channels of the transposed *low-pass* image (unstored coefficients 0), the
  same convention as :mod:`freqdata.augment.resample`;
* :func:`rot90` — ``torch.rot90(image, k, dims=(-2, -1))`` (counter-clockwise for ``k = 1``):
  transpose + vertical flip, two flips, or transpose + horizontal flip;
* :func:`translate_blocks` — shift by whole blocks, filling with a flat colour.

Per-sample variants take a ``(B,)`` mask or ``k``; a transpose that differs between samples
needs a square grid (the output shape must be the same for all).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from freqdata.augment.layout import as_channel_info
from freqdata.dct import BLOCK
from freqdata.errors import UsageError
from freqdata.transforms import ChannelInfo, hflip

__all__ = ["flip", "rot90", "translate_blocks", "transpose", "transpose_permutation"]


def _where(mask: torch.Tensor | None, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return y
    return torch.where(mask.to(x.device)[:, None, None, None], y, x)


def flip(
    x: torch.Tensor,
    channels: ChannelInfo | Sequence[str],
    axis: str = "h",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flip the image horizontally (``axis="h"``) or vertically (``"v"``) in the DCT domain.

    ``x`` ``(B, C, Hb, Wb)`` → same shape and dtype; ``mask`` ``(B,)`` bool flips only those
    samples. Exact (integers stay integers).
    """
    info = as_channel_info(channels)
    if axis == "h":
        return hflip(x, info.odd_u(x.device), mask)
    if axis != "v":
        raise UsageError(f"flip axis must be 'h' or 'v', got {axis!r}")
    sign = torch.as_tensor(np.where(info.v % 2 == 1, -1, 1), device=x.device).to(x.dtype)
    return _where(mask, x.flip(-2) * sign[:, None, None], x)


def transpose_permutation(channels: ChannelInfo | Sequence[str]) -> torch.Tensor:
    """``(C,)`` int64: channel ``c`` of the transposed cube is channel ``perm[c]`` of the input,
    or ``C`` (a zero channel) where the transposed coefficient is not stored."""
    info = as_channel_info(channels)
    pairs = zip(info.component.tolist(), info.k.tolist(), strict=True)
    where = {pair: i for i, pair in enumerate(pairs)}
    n = len(info.k)
    perm = [where.get((c, (k % BLOCK) * BLOCK + k // BLOCK), n) for c, k in where]
    return torch.as_tensor(perm, dtype=torch.int64)


def transpose(
    x: torch.Tensor, channels: ChannelInfo | Sequence[str], mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Transpose the image (swap rows and columns) in the DCT domain: ``(B, C, Hb, Wb)`` →
    ``(B, C, Wb, Hb)``. ``mask`` ``(B,)`` bool (square grids only) transposes some samples.

    A stored channel whose transpose is not stored becomes 0 (module docstring)."""
    if mask is not None and x.shape[-1] != x.shape[-2]:
        raise UsageError("a per-sample transpose needs a square block grid")
    perm = transpose_permutation(channels).to(x.device)
    padded = torch.cat([x, x.new_zeros((x.shape[0], 1, *x.shape[2:]))], 1)
    y = padded[:, perm].transpose(-1, -2)
    return _where(mask, y, x)


def rot90(
    x: torch.Tensor, channels: ChannelInfo | Sequence[str], k: int | torch.Tensor = 1
) -> torch.Tensor:
    """Rotate by ``k`` quarter turns counter-clockwise (``torch.rot90(img, k, (-2, -1))``).

    ``k``: an int, or a ``(B,)`` int tensor of per-sample turns (square grids only when the
    turns differ in parity). Exact.
    """
    info = as_channel_info(channels)
    if isinstance(k, torch.Tensor):
        k = k.to(x.device) % 4
        if x.shape[-1] != x.shape[-2] and bool((k % 2 == 1).any()):
            raise UsageError("per-sample quarter turns need a square block grid")
        out = x
        for turn in (1, 2, 3):
            out = _where(k == turn, rot90(x, info, turn), out)
        return out
    k = int(k) % 4
    if k == 0:
        return x
    if k == 2:
        return flip(flip(x, info, "h"), info, "v")
    return flip(transpose(x, info), info, "v" if k == 1 else "h")


def translate_blocks(
    x: torch.Tensor,
    channels: ChannelInfo | Sequence[str],
    dy: torch.Tensor | int,
    dx: torch.Tensor | int,
    fill: float = 0.0,
) -> torch.Tensor:
    """Shift the image by ``(dy, dx)`` whole blocks (down / right positive), per sample.

    ``dy``, ``dx``: ints or ``(B,)`` int tensors. Uncovered blocks get the flat colour of luma
    ``fill`` (pixel value; 0 = black, torchvision's default fill; 128 = mid grey) and
    neutral chroma: ``Y0 = 8 (fill - 128)``, every other coefficient 0. Exact.
    """
    info = as_channel_info(channels)
    b, c, hb, wb = x.shape
    dev = x.device
    dy = torch.as_tensor(dy, device=dev).expand(b)
    dx = torch.as_tensor(dx, device=dev).expand(b)
    rows = torch.arange(hb, device=dev)[None, :] - dy[:, None]  # source row of each output row
    cols = torch.arange(wb, device=dev)[None, :] - dx[:, None]
    valid = ((rows >= 0) & (rows < hb))[:, :, None] & ((cols >= 0) & (cols < wb))[:, None, :]
    y = x.gather(2, rows.clamp(0, hb - 1)[:, None, :, None].expand(b, c, hb, wb))
    y = y.gather(3, cols.clamp(0, wb - 1)[:, None, None, :].expand(b, c, hb, wb))
    flat = torch.zeros(c, device=dev, dtype=x.dtype)
    dc = np.flatnonzero((info.component == 0) & (info.k == 0))
    flat[torch.as_tensor(dc, device=dev)] = BLOCK * (fill - 128.0)
    return torch.where(valid[:, None], y, flat[:, None, None])
