"""DCT-Mask vectors (Shen et al., CVPR 2021): K x K masks ↔ the first n zigzag DCT coefficients.

Conventions (docs/masks.md §1):

* orthonormal 2-D DCT-II (scipy ``norm="ortho"``): ``C = D X D^T`` with
  ``D = freqdata.dct.dct_matrix(K)``; ``C[v, u]``, v = vertical frequency (row), u = horizontal
  frequency (column);
* the vector is ``C`` read in JPEG zigzag order extended to K x K (``freqdata.dct.zigzag(K)``),
  first ``n`` entries. n = 300 at any K >= 24 is exactly the anti-diagonals ``v + u <= 23``;
* computation in float64 (reference grade); results are cast to ``dtype`` (float32 default).

Only the needed coefficients are computed: the first n zigzag positions lie in
``v < r``, ``u < c`` (r = c = 24 for n = 300), so the transform is the partial product
``D[:r] X D[:c]^T`` done as two GEMMs over all masks at once (one ``(M*K, K) @ (K, c)``,
one ``(M*c, K) @ (K, r)``), about 1/5 of the work of one full 2-D DCT at K = 128, n = 300.
Decoding scatters into an ``(r, c)`` block and applies the same partial basis transposed.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from freqdata.dct import dct_matrix, zigzag
from freqdata.errors import UsageError

__all__ = ["dct_decode", "dct_encode"]


@cache
def _plan(k: int, n: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """``(r, c, v, u)``: the first n zigzag positions ``(v, u)`` (each ``(n,)`` int64) of a
    k x k grid and the bounding block ``v < r``, ``u < c``."""
    if k < 1:
        raise UsageError(f"mask size k must be >= 1, got {k}")
    if not 1 <= n <= k * k:
        raise UsageError(f"n must be in [1, {k * k}] for {k}x{k} masks, got {n}")
    zz = zigzag(k)[:n]
    v, u = zz // k, zz % k
    v.setflags(write=False)
    u.setflags(write=False)
    return int(v.max()) + 1, int(u.max()) + 1, v, u


@cache
def _basis_t(k: int, rows: int) -> np.ndarray:
    """``D[:rows].T`` (k, rows) float64, C-contiguous, read-only."""
    b = np.ascontiguousarray(dct_matrix(k)[:rows].T)
    b.setflags(write=False)
    return b


def _as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64, copy=False) if x.dtype != np.bool_ else x.astype(np.float64)


def dct_encode(
    masks: np.ndarray, n: int = 300, *, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """DCT-Mask vectors of ``(..., K, K)`` masks → ``(..., n)`` (``dtype``, float32 default).

    ``masks``: bool, integer or float, any leading shape, square K x K (binary targets are
    usually {0, 1}; soft values are transformed as they are). Element ``i`` of a vector is
    the orthonormal DCT-II coefficient ``C[v_i, u_i]`` with ``v_i * K + u_i = zigzag(K)[i]``.
    Computed in float64. With ``n = K*K`` :func:`dct_decode` inverts it exactly (up to
    float rounding).

    A transposed view (e.g. ``np.moveaxis`` of pycocotools' column-major ``(K, K, M)``
    decode output) is used without a copy: the transform of ``X^T`` is ``C^T``.
    """
    x = np.asarray(masks)
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise UsageError(f"masks must be (..., K, K), got shape {x.shape}")
    k = x.shape[-1]
    r, c, v, u = _plan(k, n)
    lead = x.shape[:-2]
    x = x.reshape(-1, k, k)
    m = x.shape[0]
    if m == 0:
        return np.zeros((*lead, n), dtype=dtype)
    # Work on whichever of X / X^T is C-contiguous; transposing swaps the roles of v and u.
    transposed = not x.flags.c_contiguous and x.transpose(0, 2, 1).flags.c_contiguous
    if transposed:
        x = x.transpose(0, 2, 1)
        r, c, v, u = c, r, u, v
    xf = _as_float(np.ascontiguousarray(x))
    # Y[m, i, u'] = (X D[:c]^T)[i, u'];  then Z[m, u', v'] = (D[:r] X D[:c]^T)[v', u'].
    y = (xf.reshape(m * k, k) @ _basis_t(k, c)).reshape(m, k, c)
    z = (np.ascontiguousarray(y.transpose(0, 2, 1)).reshape(m * c, k) @ _basis_t(k, r))
    z = z.reshape(m, c * r)
    out = z[:, u * r + v]
    return out.astype(dtype, copy=False).reshape(*lead, n)


def dct_decode(
    vectors: np.ndarray, k: int = 128, *, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """Soft masks ``(..., k, k)`` (``dtype``, float32 default) from DCT-Mask vectors ``(..., n)``.

    The n coefficients are scattered into zeros at their zigzag positions and the
    orthonormal inverse DCT (``X = D^T C D``) is applied, in float64, with only the
    ``r x c`` block of basis functions that the n positions touch. Values are not clipped:
    threshold at 0.5 (or :func:`freqdata.masks.paste_masks`) for a binary mask.
    """
    vec = np.asarray(vectors)
    if vec.ndim < 1:
        raise UsageError("vectors must be (..., n)")
    n = vec.shape[-1]
    r, c, v, u = _plan(k, n)
    lead = vec.shape[:-1]
    vec = vec.reshape(-1, n).astype(np.float64, copy=False)
    m = vec.shape[0]
    if m == 0:
        return np.zeros((*lead, k, k), dtype=dtype)
    ct = np.zeros((m, c * r), dtype=np.float64)  # C^T blocks: [m, u, v]
    ct[:, u * r + v] = vec
    # Y[m, u', i] = sum_v C[v, u'] D[v, i];  X[m, i, j] = sum_u' Y[m, u', i] D[u', j].
    y = (ct.reshape(m * c, r) @ _basis_t(k, r).T).reshape(m, c, k)
    x = np.ascontiguousarray(y.transpose(0, 2, 1)).reshape(m * k, c) @ _basis_t(k, c).T
    return x.astype(dtype, copy=False).reshape(*lead, k, k)
