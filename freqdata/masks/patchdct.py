"""PatchDCT patch vectors and 3-class patch labels (Wen et al., ICLR 2023).

A K x K mask (K = 112 in the paper) is cut into (K/8) x (K/8) patches of 8 x 8, in
row-major patch order (patch ``(i, j)`` covers rows ``8i .. 8i+7`` and columns
``8j .. 8j+7``). Each patch gets:

* a vector of the first ``dims`` (6) coefficients of its orthonormal 8x8 DCT-II in JPEG
  zigzag order: ``(v, u)`` = (0,0), (0,1), (1,0), (2,0), (1,1), (0,2), i.e. natural indices
  ``freqdata.dct.ZIGZAG[:6]`` = 0, 1, 8, 16, 9, 2. No level shift (mask values are 0/1):
  an all-foreground patch has DC = 8 and nothing else;
* a label from the integer count of foreground pixels: 0 = background (none),
  1 = mixed, 2 = foreground (all 64). Counting, never a float DC compared for equality.

The mask is binarized first (``>= 0.5``; bool and {0, 1} integer masks are unchanged), so
vectors and labels describe the same binary mask.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from freqdata.dct import dct_matrix, zigzag
from freqdata.errors import UsageError

__all__ = ["BACKGROUND", "FOREGROUND", "MIXED", "patch_decode", "patch_encode"]

BACKGROUND, MIXED, FOREGROUND = 0, 1, 2


@cache
def _patch_basis(patch: int, dims: int) -> np.ndarray:
    """(dims, patch*patch) float64: rows of ``kron(D, D)`` at the first ``dims`` zigzag
    positions (row ``8v+u`` maps a row-major patch to coefficient ``(v, u)``)."""
    if not 1 <= dims <= patch * patch:
        raise UsageError(f"dims must be in [1, {patch * patch}], got {dims}")
    d = dct_matrix(patch)
    b = np.kron(d, d)[zigzag(patch)[:dims]]
    b.setflags(write=False)
    return b


def _patches(x: np.ndarray, patch: int) -> np.ndarray:
    """``(M, H, W)`` → ``(M, H/p, W/p, p*p)`` row-major patches."""
    m, h, w = x.shape
    if h % patch or w % patch:
        raise UsageError(f"{h}x{w} masks are not a whole number of {patch}x{patch} patches")
    x = x.reshape(m, h // patch, patch, w // patch, patch).transpose(0, 1, 3, 2, 4)
    return x.reshape(m, h // patch, w // patch, patch * patch)


def patch_encode(
    masks: np.ndarray, patch: int = 8, dims: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """PatchDCT targets of ``(M, H, W)`` masks (H, W multiples of ``patch``; 112 x 112 in the
    paper) → ``(vectors (M, H/p, W/p, dims) float32, labels (M, H/p, W/p) uint8)``.

    Masks are binarized at ``>= 0.5``; vectors are the orthonormal patch DCT at the first
    ``dims`` zigzag positions (computed in float64; background patches are exactly 0 and
    foreground patches exactly ``[patch, 0, ...]``); labels are 0 background / 1 mixed /
    2 foreground from integer pixel counts. A ``(H, W)`` mask gives unbatched outputs.
    """
    x = np.asarray(masks)
    single = x.ndim == 2
    if single:
        x = x[None]
    if x.ndim != 3:
        raise UsageError(f"masks must be (M, H, W), got shape {x.shape}")
    binary = x if x.dtype == np.bool_ else x >= 0.5
    blocks = _patches(binary, patch)
    counts = blocks.sum(axis=-1, dtype=np.int64)
    labels = np.where(counts == 0, BACKGROUND, np.where(counts == patch * patch, FOREGROUND, MIXED))
    vectors = blocks.astype(np.float64) @ _patch_basis(patch, dims).T
    full = labels == FOREGROUND
    vectors[full] = 0.0  # exact, without the basis' rounding noise: DC = patch, AC = 0
    vectors[full, 0] = float(patch)
    vectors, labels = vectors.astype(np.float32), labels.astype(np.uint8)
    return (vectors[0], labels[0]) if single else (vectors, labels)


def patch_decode(vectors: np.ndarray, labels: np.ndarray, patch: int = 8) -> np.ndarray:
    """Soft masks ``(M, H, W)`` float32 from patch vectors ``(M, Hp, Wp, dims)`` and labels
    ``(M, Hp, Wp)``: background patches → 0, foreground → 1 (exactly, whatever the vector
    says), mixed → inverse DCT of the ``dims`` zigzag coefficients (others zero), not
    clipped. Threshold at 0.5 for a binary mask."""
    vec = np.asarray(vectors, dtype=np.float64)
    lab = np.asarray(labels)
    single = lab.ndim == 2
    if single:
        vec, lab = vec[None], lab[None]
    if vec.shape[:-1] != lab.shape or lab.ndim != 3:
        raise UsageError(f"vectors (M, Hp, Wp, dims) and labels (M, Hp, Wp) disagree: "
                         f"{vec.shape}, {lab.shape}")
    pix = vec @ _patch_basis(patch, vec.shape[-1])  # (M, Hp, Wp, p*p)
    pix[lab == BACKGROUND] = 0.0
    pix[lab == FOREGROUND] = 1.0
    m, hp, wp, _ = pix.shape
    out = pix.reshape(m, hp, wp, patch, patch).transpose(0, 1, 3, 2, 4)
    out = out.reshape(m, hp * patch, wp * patch).astype(np.float32)
    return out[0] if single else out
