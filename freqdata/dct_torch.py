"""Torch twin of :mod:`freqdata.dct`: the same 8x8 block DCT on tensors, on the caller's device.

Same conventions and shapes as the numpy functions: ``(..., H, W)`` samples ↔
``(..., C, Hb, Wb)`` coefficients, orthonormal DCT-II, natural index ``8v+u``, level shift 128.
Computation runs in the input's floating dtype (float32 for integer inputs).
"""

from __future__ import annotations

import numpy as np
import torch

from freqdata.dct import BLOCK, LEVEL_SHIFT, _block_basis
from freqdata.errors import UsageError


def _basis(
    select: torch.Tensor | np.ndarray | list[int] | None, like: torch.Tensor
) -> torch.Tensor:
    basis = torch.tensor(_block_basis())
    if select is not None:
        basis = basis[torch.as_tensor(np.asarray(select, dtype=np.int64))]
    return basis.to(device=like.device, dtype=like.dtype)


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.float32)


def block_dct(
    plane: torch.Tensor,
    select: torch.Tensor | np.ndarray | list[int] | None = None,
    *,
    level_shift: bool = True,
) -> torch.Tensor:
    """Block DCT of ``(..., H, W)`` (H, W multiples of 8) → ``(..., C, Hb, Wb)``.

    ``select``: natural indices to keep (default all 64). Integer inputs become float32.
    """
    x = _float(plane)
    *lead, h, w = x.shape
    if h % BLOCK or w % BLOCK:
        raise UsageError(f"plane of {h}x{w} is not a whole number of {BLOCK}x{BLOCK} blocks")
    hb, wb = h // BLOCK, w // BLOCK
    if level_shift:
        x = x - LEVEL_SHIFT
    blocks = x.reshape(*lead, hb, BLOCK, wb, BLOCK).transpose(-3, -2).reshape(*lead, hb, wb, -1)
    coef = blocks @ _basis(select, x).T  # (..., hb, wb, C)
    return coef.movedim(-1, -3)


def block_idct(coef: torch.Tensor, *, level_shift: bool = True) -> torch.Tensor:
    """Inverse of :func:`block_dct` (all 64 coefficients): ``(..., 64, Hb, Wb)`` →
    ``(..., H, W)``.
    """
    c = _float(coef).movedim(-3, -1)
    if c.shape[-1] != BLOCK * BLOCK:
        raise UsageError(f"block_idct needs all 64 coefficients, got {c.shape[-1]}")
    *lead, hb, wb, _ = c.shape
    x = (c @ _basis(None, c)).reshape(*lead, hb, wb, BLOCK, BLOCK).transpose(-3, -2)
    x = x.reshape(*lead, hb * BLOCK, wb * BLOCK)
    return x + LEVEL_SHIFT if level_shift else x
