"""8x8 block DCT-II on image planes (numpy), and JPEG's zigzag order.

Conventions (docs/conventions.md):

* orthonormal 2-D DCT-II (scipy ``norm="ortho"``) on the level-shifted samples ``x - 128``,
  which is exactly JPEG's FDCT scale: a JPEG's dequantized coefficients are comparable as
  they are, and DC = 8 * mean(block - 128);
* coefficient ``k = 8*v + u`` inside a block (v = vertical frequency = row, u = horizontal
  frequency = column), libjpeg's natural order; zigzag is a selection order only;
* block layout channels-first: ``(..., 64, Hb, Wb)`` or ``(..., len(select), Hb, Wb)``.

The transform of every block is one GEMM with ``kron(D, D)`` restricted to the selected
coefficients, so selecting 16 of 64 frequencies costs a quarter of the full transform.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from freqdata.errors import UsageError

BLOCK = 8
LEVEL_SHIFT = 128.0


@cache
def dct_matrix(n: int = BLOCK) -> np.ndarray:
    """Orthonormal DCT-II matrix ``D`` (n, n) float64: ``D[k, i] = c_k cos(pi (2i+1) k / 2n)``.

    ``D @ x`` is ``scipy.fft.dct(x, norm="ortho")``; ``D.T`` is its inverse.
    """
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    d.setflags(write=False)
    return d


@cache
def _block_basis() -> np.ndarray:
    """(64, 64) float64 ``kron(D, D)``: row ``8v+u`` maps a row-major block to coefficient v, u."""
    d = dct_matrix(BLOCK)
    basis = np.kron(d, d)
    basis.setflags(write=False)
    return basis


@cache
def zigzag(n: int = BLOCK) -> np.ndarray:
    """JPEG zigzag order extended to an n x n grid, as natural (row-major) indices, (n*n,) int64.

    Anti-diagonals ``s = v + u`` in increasing order; on even ``s`` the walk goes up
    (v decreasing), on odd ``s`` down, exactly as JPEG's 8x8 table.
    """
    order = []
    for s in range(2 * n - 1):
        vs = range(max(0, s - n + 1), min(s, n - 1) + 1)
        vs = reversed(vs) if s % 2 == 0 else vs
        order.extend(v * n + (s - v) for v in vs)
    out = np.asarray(order, dtype=np.int64)
    out.setflags(write=False)
    return out


ZIGZAG = zigzag(BLOCK)
"""JPEG's zigzag scan of an 8x8 block as natural indices (64,)."""


def blockify(plane: np.ndarray) -> np.ndarray:
    """Split ``(..., H, W)`` (H, W multiples of 8) into ``(..., Hb, Wb, 64)`` row-major blocks."""
    *lead, h, w = plane.shape
    if h % BLOCK or w % BLOCK:
        raise UsageError(f"plane of {h}x{w} is not a whole number of {BLOCK}x{BLOCK} blocks")
    hb, wb = h // BLOCK, w // BLOCK
    x = plane.reshape(*lead, hb, BLOCK, wb, BLOCK)
    x = np.moveaxis(x, -3, -2)  # (..., hb, wb, 8, 8)
    return x.reshape(*lead, hb, wb, BLOCK * BLOCK)


def unblockify(blocks: np.ndarray) -> np.ndarray:
    """Inverse of :func:`blockify`: ``(..., Hb, Wb, 64)`` → ``(..., 8*Hb, 8*Wb)``."""
    *lead, hb, wb, _ = blocks.shape
    x = blocks.reshape(*lead, hb, wb, BLOCK, BLOCK)
    x = np.moveaxis(x, -2, -3)  # (..., hb, 8, wb, 8)
    return x.reshape(*lead, hb * BLOCK, wb * BLOCK)


def block_dct(
    plane: np.ndarray,
    select: np.ndarray | list[int] | None = None,
    *,
    level_shift: bool = True,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Orthonormal 8x8 block DCT-II of ``(..., H, W)`` samples → ``(..., C, Hb, Wb)``.

    ``select`` lists the natural indices ``8v+u`` to keep (default: all 64, in natural
    order); only those rows of the basis are computed. With ``level_shift`` the samples are
    taken as 8-bit values and 128 is subtracted first (JPEG's convention). H and W must be
    multiples of 8. The GEMM runs in ``dtype`` (float32 by default, float64 for references).
    """
    idx = np.arange(BLOCK * BLOCK) if select is None else np.asarray(select, dtype=np.int64)
    x = blockify(np.asarray(plane, dtype=dtype))
    if level_shift:
        x = x - LEVEL_SHIFT  # a new array: the caller's plane is never modified
    coef = x @ _block_basis()[idx].T.astype(dtype, copy=False)  # (..., hb, wb, C)
    return np.moveaxis(coef, -1, -3)


def block_idct(coef: np.ndarray, *, level_shift: bool = True) -> np.ndarray:
    """Inverse of :func:`block_dct` for all 64 coefficients: ``(..., 64, Hb, Wb)`` → ``(…, H, W)``.

    float64 in, float64 out; adds 128 back when ``level_shift``. No rounding or clipping.
    """
    c = np.moveaxis(np.asarray(coef, dtype=np.float64), -3, -1)
    if c.shape[-1] != BLOCK * BLOCK:
        raise UsageError(f"block_idct needs all 64 coefficients, got {c.shape[-1]}")
    x = unblockify(c @ _block_basis())
    return x + LEVEL_SHIFT if level_shift else x
