"""Box ↔ grid resampling of masks: ROIAlign-style crops to K x K, and pastes back into images.

Both directions use continuous pixel coordinates in which pixel ``(y, x)`` covers
``[y, y+1) x [x, x+1)`` and its centre is ``(y + 0.5, x + 0.5)``; boxes are ``xyxy`` in
those coordinates (a COCO ``bbox`` ``[x, y, w, h]`` is ``[x, y, x + w, y + h]``).

* :func:`crop_resize` — image mask → K x K grid over a box: detectron2's
  ``ROIAlign(output_size=K, spatial_scale=1, sampling_ratio, aligned=True)``, which
  ``BitMasks.crop_and_resize`` (and so DCT-Mask's targets from bitmasks) uses. Output cell
  ``(p, q)`` averages ``s_y x s_x`` bilinear samples at
  ``y = y0 + (p + (a + 0.5) / s_y) * h / K - 0.5`` (and the same in x), pixel-index units
  (sample at ``y`` interpolates between pixel rows ``floor(y)`` and ``floor(y) + 1``).
  A sample with ``y < -1`` or ``y > H`` (or the same in x) is 0; otherwise coordinates are
  clamped to ``[0, H-1]`` (ROIAlign's ``bilinear_interpolate``). ``sampling_ratio = 0`` is
  ROIAlign's adaptive choice ``s = ceil(h / K)`` per axis (1 for boxes up to K pixels).
* :func:`paste_masks` — K x K soft masks → image: detectron2's ``paste_masks_in_image``
  (``_do_paste_mask``): image pixel ``(y, x)`` samples the K x K mask bilinearly at
  ``((y + 0.5 - y0) / h * K - 0.5, (x + 0.5 - x0) / w * K - 0.5)``, i.e.
  ``grid_sample(align_corners=False)`` with zero padding (neighbours outside the K x K grid
  count as 0), then ``>= threshold``.

Both are separable, so each mask is two small matrix products ``A_y @ M @ A_x^T`` over the
rows and columns that can be non-zero.
"""

from __future__ import annotations

import math

import numpy as np

from freqdata.errors import UsageError

__all__ = ["crop_resize", "paste_masks"]


def _roi_axis(start: float, length: float, size: int, k: int, s: int) -> tuple[int, np.ndarray]:
    """``(lo, A)``: ROIAlign weights of one axis, ``A`` (k, span) float64 over pixels
    ``lo .. lo + span - 1`` (all-zero ``A`` with span 1 when no sample is valid)."""
    p = np.arange(k, dtype=np.float64)[:, None]
    t = (np.arange(s, dtype=np.float64)[None, :] + 0.5) / s
    pos = (start - 0.5 + (p + t) * (length / k)).ravel()  # (k*s,)
    valid = (pos >= -1.0) & (pos <= size)
    pos = np.maximum(pos, 0.0)
    low = np.floor(pos).astype(np.int64)
    edge = low >= size - 1
    low = np.where(edge, size - 1, low)
    high = np.where(edge, size - 1, low + 1)
    frac = np.where(edge, 0.0, pos - low)
    w_low = np.where(valid, 1.0 - frac, 0.0) / s
    w_high = np.where(valid, frac, 0.0) / s
    if not valid.any():
        return 0, np.zeros((k, 1))
    rows = np.repeat(np.arange(k), s)[valid]
    low, high = low[valid], high[valid]
    lo = int(low.min())
    a = np.zeros((k, int(high.max()) - lo + 1))
    np.add.at(a, (rows, low - lo), w_low[valid])
    np.add.at(a, (rows, high - lo), w_high[valid])
    return lo, a


def crop_resize(
    masks: np.ndarray,
    boxes: np.ndarray,
    k: int = 128,
    *,
    sampling_ratio: int = 0,
) -> np.ndarray:
    """ROIAlign crops of image masks: ``(M, H, W)`` + boxes ``(M, 4)`` xyxy → ``(M, k, k)``
    float64 soft masks in [0, 1] (threshold ``>= 0.5`` for DCT-Mask targets).

    ``masks``: bool / integer {0, 1} / float, ``masks[i]`` is sampled in ``boxes[i]``.
    ``sampling_ratio``: samples per output cell and axis; 0 = ROIAlign's adaptive
    ``ceil(box side / k)``. Exactly detectron2's ``ROIAlign(aligned=True)`` (module
    docstring); :func:`freqdata.masks.crop_resize_torch` is the batched torch twin (fixed
    sampling ratio).
    """
    m_arr = np.asarray(masks)
    if m_arr.ndim == 2:
        m_arr = m_arr[None]
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if m_arr.ndim != 3 or m_arr.shape[0] != b.shape[0]:
        raise UsageError(f"masks (M, H, W) and boxes (M, 4) disagree: {m_arr.shape}, {b.shape}")
    if sampling_ratio < 0:
        raise UsageError(f"sampling_ratio must be >= 0, got {sampling_ratio}")
    _, h_img, w_img = m_arr.shape
    out = np.zeros((b.shape[0], k, k), dtype=np.float64)
    for i, (x0, y0, x1, y1) in enumerate(b):
        bw, bh = x1 - x0, y1 - y0
        sy = sampling_ratio or max(1, math.ceil(bh / k))
        sx = sampling_ratio or max(1, math.ceil(bw / k))
        ylo, ay = _roi_axis(y0, bh, h_img, k, sy)
        xlo, ax = _roi_axis(x0, bw, w_img, k, sx)
        crop = m_arr[i, ylo : ylo + ay.shape[1], xlo : xlo + ax.shape[1]]
        out[i] = ay @ crop.astype(np.float64) @ ax.T
    return out


def _paste_axis(lo: float, hi: float, size: int, k: int) -> tuple[int, np.ndarray]:
    """``(start, W)``: bilinear weights ``W`` (span, k) of image pixels ``start ..`` that
    sample the k-grid of box side ``[lo, hi)`` with zero padding (grid_sample,
    align_corners=False); only pixels with a non-zero weight are included."""
    pix = np.arange(size, dtype=np.float64) + 0.5
    pos = (pix - lo) / (hi - lo) * k - 0.5
    inside = np.nonzero((pos > -1.0) & (pos < k))[0]
    if inside.size == 0:
        return 0, np.zeros((0, k))
    start, stop = int(inside[0]), int(inside[-1]) + 1
    pos = pos[start:stop]
    low = np.floor(pos).astype(np.int64)
    frac = pos - low
    span = stop - start
    w = np.zeros((span, k + 2))  # columns shifted by one: index -1 and k land in padding
    rows = np.arange(span)
    np.add.at(w, (rows, low + 1), 1.0 - frac)
    np.add.at(w, (rows, low + 2), frac)
    return start, w[:, 1 : k + 1]


def paste_masks(
    soft: np.ndarray,
    boxes: np.ndarray,
    image_size: tuple[int, int],
    threshold: float = 0.5,
) -> np.ndarray:
    """Paste K x K soft masks ``(M, K, K)`` into their boxes ``(M, 4)`` xyxy (float, pixel
    units) of an ``(H, W)`` image → ``(M, H, W)`` bool, ``value >= threshold``.

    Sampling is detectron2's ``paste_masks_in_image`` (as used by Mask R-CNN and DCT-Mask
    inference): image pixel centre ``(y + 0.5, x + 0.5)`` maps to mask coordinates
    ``((y + 0.5 - y0) / (y1 - y0) * K - 0.5, ...)`` and is interpolated bilinearly between
    the four nearest mask cells, cells outside the K x K grid counting as 0 (so the pasted
    mask fades out within half a cell beyond the box). Boxes with zero width or height
    paste nothing.
    """
    s = np.asarray(soft, dtype=np.float64)
    if s.ndim == 2:
        s = s[None]
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if s.ndim != 3 or s.shape[1] != s.shape[2] or s.shape[0] != b.shape[0]:
        raise UsageError(f"soft (M, K, K) and boxes (M, 4) disagree: {s.shape}, {b.shape}")
    h_img, w_img = int(image_size[0]), int(image_size[1])
    k = s.shape[1]
    out = np.zeros((s.shape[0], h_img, w_img), dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(b):
        if not (x1 > x0 and y1 > y0):
            continue
        ys, wy = _paste_axis(y0, y1, h_img, k)
        xs, wx = _paste_axis(x0, x1, w_img, k)
        if wy.shape[0] == 0 or wx.shape[0] == 0:
            continue
        out[i, ys : ys + wy.shape[0], xs : xs + wx.shape[0]] = (wy @ s[i] @ wx.T) >= threshold
    return out
