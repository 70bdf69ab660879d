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

from freqdata import _jpegcoef
from freqdata.dct import BLOCK, dct_matrix
from freqdata.errors import UsageError
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
        raise UsageError(f"unsupported upsampling factor {factor} / phase {phase}")
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


@cache
def _upsample_map(fv: int, fh: int, select: tuple[int, ...], sign: tuple[float, ...]) -> np.ndarray:
    """(64, fv*fh, C) float64: input coefficient → output block ``(i, j)`` (index ``i*fh + j``),
    coefficient ``select[c]`` times ``sign[c]``; rows of ``kron(A_i, A_j)`` (``A`` =
    :func:`upsample_matrix`)."""
    w = np.asarray(sign)[:, None]
    m = np.stack(
        [
            np.kron(upsample_matrix(fv, i), upsample_matrix(fh, j))[list(select)] * w
            for i in range(fv)
            for j in range(fh)
        ]
    )  # (fv*fh, C, 64)
    m = np.ascontiguousarray(m.transpose(2, 0, 1))
    m.setflags(write=False)
    return m


class _Source(NamedTuple):
    """Where the selected output channels come from, for one selection and orientation."""

    index: tuple[int, ...]  # source coefficient per output channel
    sign: tuple[float, ...]  # +1.0 / -1.0 per output channel
    index_array: np.ndarray  # index as (C,) int64
    negate: np.ndarray  # sign < 0 as (C,) bool


@cache
def _source(select: tuple[int, ...], orient: Orientation) -> _Source:
    """:func:`_oriented_source` of ``select`` under ``orient``, in the forms the C kernels take."""
    src, sign = _oriented_source(np.asarray(select, dtype=np.int64), orient)
    index = np.ascontiguousarray(src, dtype=np.int64)
    negate = np.ascontiguousarray(sign < 0)
    index.setflags(write=False)
    negate.setflags(write=False)
    return _Source(tuple(index.tolist()), tuple(sign.tolist()), index, negate)


def _factors(coefs: JpegCoefficients, comp: int) -> tuple[int, int]:
    """(vertical, horizontal) upsampling factors of component ``comp`` to the luma grid."""
    (hy, vy), (hc, vc) = coefs.sampling[0], coefs.sampling[comp]
    return vy // vc, hy // hc


def luma_grid(coefs: JpegCoefficients, orient: bool = True) -> tuple[int, int]:
    """``(Hb, Wb)`` of the luma block grid, after the file's EXIF orientation if ``orient``:
    the grid of :func:`component_cube` with ``upsample=True``."""
    hb, wb = coefs.planes[0].shape[:2]
    o = EXIF_ORIENTATIONS.get(coefs.orientation, EXIF_ORIENTATIONS[1])
    return (wb, hb) if orient and o.transpose else (hb, wb)


def component_cube(
    coefs: JpegCoefficients,
    comp: int,
    select: list[int] | np.ndarray,
    *,
    upsample: bool,
    orient: bool = True,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Channels ``select`` of component ``comp`` as ``(C, Hb, Wb)`` int16.

    ``upsample``: bring the component to the luma block grid (``chroma="full"``) by exact
    DCT-domain box upsampling, cropped to the luma grid; otherwise keep its own sampling
    (``chroma="native"``). ``orient``: apply the file's EXIF orientation. A component the
    file does not have (grayscale chroma) is all zeros: JPEG's value for neutral chroma.
    ``out``: a C-contiguous int16 array of the result's shape to write into (returned).

    Only the selected output coefficients are computed, in C: a gather at the component's
    own sampling; with upsampling, one fixed float64 linear map per source block (the rows
    ``select`` of ``kron(A_i, A_j)`` for each output block ``(i, j)``), rounded half to even
    and saturated to int16.
    """
    sel = tuple(np.asarray(select, dtype=np.int64).reshape(-1).tolist())
    o = EXIF_ORIENTATIONS.get(coefs.orientation, EXIF_ORIENTATIONS[1]) if orient else None
    src = _source(sel, o or EXIF_ORIENTATIONS[1])
    luma = coefs.planes[0]
    have = comp < len(coefs.planes)
    fv, fh = _factors(coefs, comp) if upsample and have else (1, 1)
    grid = luma.shape[:2] if upsample or not have else coefs.planes[comp].shape[:2]
    moved = o is not None and any(o)
    shape = (len(sel), *(grid[::-1] if moved and o.transpose else grid))
    if out is not None and (
        out.shape != shape or out.dtype != np.int16 or not out.flags.c_contiguous
    ):
        raise UsageError(f"out must be a C-contiguous {shape} int16 array")
    cube = out if out is not None and not moved else np.empty((len(sel), *grid), np.int16)
    if not have:
        cube[...] = 0
    elif (fv, fh) == (1, 1):
        _jpegcoef.gather(_contiguous(coefs.planes[comp]), src.index_array, src.negate, cube)
    else:
        m = _upsample_map(fv, fh, src.index, src.sign)
        _jpegcoef.upsample(_contiguous(coefs.planes[comp]), m, fv, fh, cube)
    if not moved:
        return cube
    turned = _orient_grid(cube.transpose(1, 2, 0), o).transpose(2, 0, 1)
    if out is None:
        return np.ascontiguousarray(turned)
    out[...] = turned
    return out


def _contiguous(plane: np.ndarray) -> np.ndarray:
    """``plane`` as the C kernels take it: C-contiguous int16."""
    return np.ascontiguousarray(plane, dtype=np.int16)
