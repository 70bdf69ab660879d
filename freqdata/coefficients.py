"""Cubes straight from a JPEG's coefficients: exact DCT-domain chroma upsampling and orientation.

Everything here is a linear map on 8x8 coefficient blocks, so no inverse DCT is needed:

* **Box upsampling** of a chroma block by a factor ``f`` (1, 2 or 4) along an axis: output
  block ``i`` (of ``f``) holds source samples ``(8i + m) // f``. With ``U_i`` that 8x8
  selection and ``D`` the DCT matrix, the output coefficients are ``A_i C A_j^T`` with
  ``A_i = D U_i D^T``: exactly the DCT of the nearest-neighbour upsampled pixels (before
  the final rounding to int16).
* **EXIF orientation** (values 2..8) as transpose / horizontal flip / vertical flip: a
  transposed block swaps ``u`` and ``v``, a horizontal flip negates odd ``u`` and mirrors
  the block columns, a vertical flip negates odd ``v`` and mirrors the block rows. Exact
  for images whose stored size is a whole number of blocks; otherwise the encoder's edge
  padding moves with the flip to the leading edge (documented in docs/conventions.md).
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np

from freqdata.dct import BLOCK, dct_matrix
from freqdata.jpeg import JpegCoefficients


class Orientation(NamedTuple):
    """An EXIF orientation as: transpose first, then flip horizontally, then vertically."""

    transpose: bool
    hflip: bool
    vflip: bool


# EXIF Orientation tag → the operation that displays the stored image upright.
EXIF_ORIENTATIONS: dict[int, Orientation] = {
    1: Orientation(False, False, False),
    2: Orientation(False, True, False),
    3: Orientation(False, True, True),
    4: Orientation(False, False, True),
    5: Orientation(True, False, False),
    6: Orientation(True, True, False),
    7: Orientation(True, True, True),
    8: Orientation(True, False, True),
}


@cache
def upsample_matrix(factor: int, phase: int) -> np.ndarray:
    """(8, 8) float64 ``A = D U D^T``: 1-D DCT coefficients of box-upsampled block ``phase``.

    ``U[m, n] = 1`` where ``n = (8 * phase + m) // factor``.
    """
    if factor not in (1, 2, 4) or not 0 <= phase < factor:
        raise ValueError(f"unsupported upsampling factor {factor} / phase {phase}")
    u = np.zeros((BLOCK, BLOCK))
    m = np.arange(BLOCK)
    u[m, (BLOCK * phase + m) // factor] = 1.0
    d = dct_matrix(BLOCK)
    a = d @ u @ d.T
    a.setflags(write=False)
    return a


def _oriented_source(select: np.ndarray, orient: Orientation) -> tuple[np.ndarray, np.ndarray]:
    """Source coefficient index and sign for each selected output index under ``orient``."""
    v, u = np.divmod(np.asarray(select, dtype=np.int64), BLOCK)
    src = BLOCK * u + v if orient.transpose else BLOCK * v + u
    sign = np.ones(len(v))
    if orient.hflip:
        sign[u % 2 == 1] *= -1
    if orient.vflip:
        sign[v % 2 == 1] *= -1
    return src, sign


def _orient_grid(x: np.ndarray, orient: Orientation) -> np.ndarray:
    """Apply ``orient`` to the block grid of ``(Hb, Wb, C)``."""
    if orient.transpose:
        x = x.transpose(1, 0, 2)
    if orient.hflip:
        x = x[:, ::-1]
    if orient.vflip:
        x = x[::-1]
    return x


def _upsampled_select(
    plane: np.ndarray, select: np.ndarray, weights: np.ndarray, fv: int, fh: int
) -> np.ndarray:
    """``plane`` (Hb, Wb, 64) box-upsampled by (fv, fh) in the DCT domain, rows ``select`` only.

    ``weights`` (len(select),) multiply each output channel. Returns float64 (Hb*fv, Wb*fh, C).
    """
    hb, wb, _ = plane.shape
    src = plane.reshape(hb * wb, BLOCK * BLOCK).astype(np.float64)
    out = np.empty((hb, fv, wb, fh, len(select)))
    for i in range(fv):
        for j in range(fh):
            lin = np.kron(upsample_matrix(fv, i), upsample_matrix(fh, j))[select]
            out[:, i, :, j] = (src @ (lin.T * weights)).reshape(hb, wb, -1)
    return out.reshape(hb * fv, wb * fh, len(select))


def _factors(coefs: JpegCoefficients, comp: int) -> tuple[int, int]:
    """(vertical, horizontal) upsampling factors of component ``comp`` to the luma grid."""
    (hy, vy), (hc, vc) = coefs.sampling[0], coefs.sampling[comp]
    return vy // vc, hy // hc


def component_cube(
    coefs: JpegCoefficients,
    comp: int,
    select: list[int] | np.ndarray,
    *,
    upsample: bool,
    orient: bool = True,
) -> np.ndarray:
    """Channels ``select`` of component ``comp`` as ``(C, Hb, Wb)`` int16.

    ``upsample``: bring the component to the luma block grid (``chroma="full"``) by exact
    DCT-domain box upsampling, cropped to the luma grid; otherwise keep its own sampling
    (``chroma="native"``). ``orient``: apply the file's EXIF orientation. A component the
    file does not have (grayscale chroma) is all zeros: JPEG's value for neutral chroma.
    """
    select = np.asarray(select, dtype=np.int64)
    o = EXIF_ORIENTATIONS.get(coefs.orientation, EXIF_ORIENTATIONS[1]) if orient else None
    src, sign = _oriented_source(select, o) if o else (select, np.ones(len(select)))
    luma = coefs.planes[0]
    if comp >= len(coefs.planes):
        grid = np.zeros((*luma.shape[:2], len(select)), dtype=np.int16)
    else:
        plane = coefs.planes[comp]
        fv, fh = _factors(coefs, comp) if upsample else (1, 1)
        if (fv, fh) == (1, 1):
            grid = plane[..., src] * sign.astype(np.int16) if o else plane[..., src]
        else:
            up = _upsampled_select(plane, src, sign, fv, fh)[: luma.shape[0], : luma.shape[1]]
            grid = np.clip(np.rint(up), -32768, 32767).astype(np.int16)
    if o:
        grid = _orient_grid(grid, o)
    return np.ascontiguousarray(grid.transpose(2, 0, 1))
