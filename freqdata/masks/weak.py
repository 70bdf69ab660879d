"""Block-wise weak labels and the spectral tools that choose their grid.

After "Spectral Analysis for Semantic Segmentation with Applications on Feature
Truncation and Weak Annotation" (Li-Wei Chen, Wei-Chen Chiu, Chin-Tien Wu; arXiv:2012.14123).
The paper's own equations could not be retrieved for this implementation (only its
abstract and summaries), so the definitions below are the ones stated in docs/masks.md §1 and
the issue, written out exactly:

* **Frequencies** are integer cycles per image along each axis, signed
  (``np.fft.fftfreq(H, 1/H)``); the band of limit ``nu_max`` is the *square*
  ``|f_y| <= nu_max and |f_x| <= nu_max``, which is what a grid of ``2*nu_max + 1`` cells
  per axis can represent. Unnormalized FFTs (numpy's default), spectra *not* fftshift'ed
  (index 0 = DC) unless asked.
* **Label spectrum**: ``S(w) = sum_c |F[y_c](w)|^2`` over the one-hot maps ``y_c`` of the
  classes ``0 .. num_classes-1``; ignore pixels are all-zero in every ``y_c``.
  ``energy_kept(nu) = sum_{w in band(nu)} S(w) / sum_w S(w)`` (DC included).
* **CE decomposition**: with ``log p_c = log_softmax(logits)_c`` and ``L_c = F[log p_c]``,
  Parseval gives ``CE = -sum_x sum_c y_c(x) log p_c(x) = sum_w E(w)`` with
  ``E(w) = -(1/HW) sum_c Re(Y_c(w) conj(L_c(w)))``; the relative CE loss rate is
  ``R_ce(nu) = sum_{w in band(nu)} E(w) / CE`` (1 at full band; terms can be negative, so
  it need not be monotone in general).
* **Block-wise labels**: see :func:`blockwise`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from freqdata.errors import UsageError

__all__ = [
    "IGNORE_INDEX",
    "blockwise",
    "ce_spectrum",
    "energy_kept",
    "grid_size",
    "label_spectrum",
    "miou",
    "relative_ce_loss_rate",
]

IGNORE_INDEX = 255


def grid_size(nu_max: int, size: int) -> int:
    """Cells along an axis of ``size`` pixels for band limit ``nu_max``:
    ``min(2*nu_max + 1, size)`` (the paper's ``2*nu_max + 1`` for 513-pixel crops, capped at
    one cell per pixel)."""
    if nu_max < 0:
        raise UsageError(f"nu_max must be >= 0, got {nu_max}")
    return min(2 * int(nu_max) + 1, int(size))


def _cells(size: int, g: int) -> np.ndarray:
    """Cell index of every pixel along an axis: ``floor(i * g / size)``; cell ``j`` covers
    pixels ``ceil(j*size/g) .. ceil((j+1)*size/g) - 1`` (never empty since ``g <= size``)."""
    return (np.arange(size, dtype=np.int64) * g) // size


def blockwise(
    label_map: np.ndarray, nu_max: int, *, ignore_index: int | None = IGNORE_INDEX
) -> np.ndarray:
    """The block-wise weak label of ``label_map`` ``(H, W)`` (integer) for band limit ``nu_max``,
    back at ``(H, W)``, same dtype.

    Grid: ``grid_size(nu_max, H) x grid_size(nu_max, W)`` cells, i.e. ``2*nu_max + 1`` per
    axis (the paper's grid for 513 x 513 crops; the same count for any size, capped at the
    axis length), cell boundaries at ``ceil(j * H / G)``. Each cell takes the majority label
    of its pixels; ties go to the smallest label; ``ignore_index`` pixels do not vote, and a
    cell of only ignore pixels stays ``ignore_index``. Up-sampling is nearest neighbour:
    every pixel takes its own cell's label. An axis whose grid is at least its length is
    left as is, so for ``2*nu_max + 1 >= max(H, W)`` the input comes back unchanged.
    """
    lab = np.asarray(label_map)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise UsageError(f"label_map must be a 2-D integer array, got {lab.dtype} {lab.shape}")
    h, w = lab.shape
    gy, gx = grid_size(nu_max, h), grid_size(nu_max, w)
    if gy == h and gx == w:
        return lab.copy()
    cell = (_cells(h, gy)[:, None] * gx + _cells(w, gx)[None, :]).ravel()
    flat = lab.ravel()
    vote = np.ones(flat.shape, bool) if ignore_index is None else flat != ignore_index
    values, inverse = np.unique(flat[vote], return_inverse=True)
    n_cells = gy * gx
    grid = np.full(n_cells, ignore_index if ignore_index is not None else 0, dtype=lab.dtype)
    if values.size:
        counts = np.bincount(cell[vote] * values.size + inverse.ravel(),
                             minlength=n_cells * values.size).reshape(n_cells, values.size)
        has = counts.any(axis=1)
        grid[has] = values[np.argmax(counts[has], axis=1)]  # first maximum = smallest label
    return grid.reshape(gy, gx)[_cells(h, gy)[:, None], _cells(w, gx)[None, :]]


def _one_hot_present(
    lab: np.ndarray, num_classes: int, ignore_index: int | None
) -> list[tuple[int, np.ndarray]]:
    valid = np.ones(lab.shape, bool) if ignore_index is None else lab != ignore_index
    bad = valid & ((lab < 0) | (lab >= num_classes))
    if bad.any():
        raise UsageError(f"labels outside [0, {num_classes}) other than ignore_index")
    present = np.unique(lab[valid])
    return [(int(c), (lab == c).astype(np.float64)) for c in present]


def label_spectrum(
    label_map: np.ndarray,
    num_classes: int,
    *,
    ignore_index: int | None = IGNORE_INDEX,
    shift: bool = False,
) -> np.ndarray:
    """Power spectrum of the one-hot label maps, ``(H, W)`` float64:
    ``S(w) = sum_c |FFT2(y_c)(w)|^2`` (unnormalized FFT, so ``S.sum() = H*W * #labelled
    pixels``). Index 0 is DC (numpy FFT order) unless ``shift`` (then ``np.fft.fftshift``)."""
    lab = np.asarray(label_map)
    spec = np.zeros(lab.shape, dtype=np.float64)
    for _, y in _one_hot_present(lab, num_classes, ignore_index):
        f = np.fft.fft2(y)
        spec += f.real**2 + f.imag**2
    return np.fft.fftshift(spec) if shift else spec


def _band_radius(shape: tuple[int, int]) -> np.ndarray:
    """``max(|f_y|, |f_x|)`` per frequency (numpy FFT order), int64 cycles per image."""
    fy = np.abs(np.fft.fftfreq(shape[0], 1.0 / shape[0])).round().astype(np.int64)
    fx = np.abs(np.fft.fftfreq(shape[1], 1.0 / shape[1])).round().astype(np.int64)
    return np.maximum(fy[:, None], fx[None, :])


def _band_sums(
    spectrum: np.ndarray, nu_max: int | Sequence[int]
) -> tuple[np.ndarray, float, bool]:
    """Band sums of ``spectrum`` (unshifted) for each nu, the total, and whether nu was a
    scalar."""
    scalar = np.ndim(nu_max) == 0
    nus = np.atleast_1d(np.asarray(nu_max, dtype=np.int64))
    if (nus < 0).any():
        raise UsageError("nu_max must be >= 0")
    radius = _band_radius(spectrum.shape)
    per_radius = np.bincount(radius.ravel(), weights=spectrum.ravel())
    cumulative = np.cumsum(per_radius)
    total = float(spectrum.sum())
    sums = np.where(nus >= radius.max(), total, cumulative[np.minimum(nus, len(cumulative) - 1)])
    return sums, total, scalar


def energy_kept(
    label_map: np.ndarray,
    nu_max: int | Sequence[int],
    num_classes: int,
    *,
    ignore_index: int | None = IGNORE_INDEX,
) -> float | np.ndarray:
    """Fraction of the label spectrum's energy (:func:`label_spectrum`) in the square band
    ``|f_y|, |f_x| <= nu_max`` (cycles per image). A sequence of limits gives an array.
    Monotone non-decreasing in ``nu_max``; exactly 1.0 once the band covers every frequency
    (``nu_max >= max(H, W) // 2``)."""
    spec = label_spectrum(label_map, num_classes, ignore_index=ignore_index)
    sums, total, scalar = _band_sums(spec, nu_max)
    frac = sums / total if total > 0 else np.ones_like(sums, dtype=np.float64)
    return float(frac[0]) if scalar else frac


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=0, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=0, keepdims=True))


def ce_spectrum(
    logits: np.ndarray, labels: np.ndarray, *, ignore_index: int | None = IGNORE_INDEX
) -> np.ndarray:
    """Per-frequency CE contributions ``E(w)`` ``(H, W)`` float64 (numpy FFT order) of logits
    ``(C, H, W)`` against labels ``(H, W)``: ``E(w) = -(1/HW) sum_c Re(Y_c(w) conj L_c(w))``
    with ``L_c = FFT2(log_softmax(logits)_c)``. ``E.sum()`` equals the summed (not averaged)
    pixel cross-entropy ``-sum_x log p_{y(x)}(x)`` over labelled pixels (Parseval)."""
    logp = _log_softmax(logits)
    lab = np.asarray(labels)
    if logp.ndim != 3 or logp.shape[1:] != lab.shape:
        raise UsageError(f"logits (C, H, W) and labels (H, W) disagree: {logp.shape}, {lab.shape}")
    h, w = lab.shape
    e = np.zeros((h, w), dtype=np.float64)
    for c, y in _one_hot_present(lab, logp.shape[0], ignore_index):
        yc, lc = np.fft.fft2(y), np.fft.fft2(logp[c])
        e -= yc.real * lc.real + yc.imag * lc.imag
    return e / (h * w)


def relative_ce_loss_rate(
    logits: np.ndarray,
    labels: np.ndarray,
    nu_max: int | Sequence[int],
    *,
    ignore_index: int | None = IGNORE_INDEX,
) -> float | np.ndarray:
    """``R_ce(nu_max)``: the part of the cross-entropy carried by frequencies in the square
    band ``|f_y|, |f_x| <= nu_max``, relative to the full CE (module docstring; the
    definition given in docs/masks.md §1 / the issue, since the paper's equation could not be
    retrieved). ``logits`` ``(C, H, W)`` (raw scores; log-softmax over C is applied),
    ``labels`` ``(H, W)`` with ``ignore_index`` pixels left out. 1.0 at full band (up to
    float rounding). A sequence of limits gives an array."""
    e = ce_spectrum(logits, labels, ignore_index=ignore_index)
    sums, total, scalar = _band_sums(e, nu_max)
    rate = sums / total if total != 0 else np.ones_like(sums, dtype=np.float64)
    return float(rate[0]) if scalar else rate


def miou(
    pred: np.ndarray, target: np.ndarray, *, ignore_index: int | None = IGNORE_INDEX
) -> float:
    """Mean IoU of two label maps over the classes present in either (at pixels where
    ``target`` is not ``ignore_index``): ``mean_c |P_c & T_c| / |P_c | T_c|``."""
    p, t = np.asarray(pred).ravel(), np.asarray(target).ravel()
    if p.shape != t.shape:
        raise UsageError(f"pred and target shapes differ: {pred.shape}, {target.shape}")
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    classes = np.union1d(np.unique(p), np.unique(t))
    if ignore_index is not None:
        classes = classes[classes != ignore_index]
    if classes.size == 0:
        return 1.0
    pi, ti = np.searchsorted(classes, p), np.searchsorted(classes, t)
    pi = np.where((pi < classes.size) & (classes[np.minimum(pi, classes.size - 1)] == p), pi, -1)
    n = classes.size
    inter = np.bincount(ti[pi == ti], minlength=n)
    area_p = np.bincount(pi[pi >= 0], minlength=n)
    area_t = np.bincount(ti, minlength=n)
    return float(np.mean(inter / (area_p + area_t - inter)))
