"""Resized crop of *pixel* batches with the DCT path's kernels: the RGB arm of a comparison.

:func:`resized_crop_pixels` is torchvision's ``resized_crop(img, top, left, h, w, size)`` on a
``(B, C, H, W)`` batch with per-sample boxes, computed as ``A_h P A_w^T`` with the 1-D
resampling matrices of :func:`freqdata.augment.resample.axis_weights` — the same boxes and
the same kernel (``"triangle"``: antialiased bilinear, PIL's ``BILINEAR``; ``"bilinear"``)
as :func:`freqdata.augment.resized_crop` uses on DCT cubes, so an RGB model and a DCT model
trained side by side see the same crops of the same pixels. Batched: two matmuls, no
per-sample loop.
"""

from __future__ import annotations

import torch

from freqdata.augment.resample import axis_weights
from freqdata.errors import UsageError

__all__ = ["resample_matrix", "resized_crop_pixels"]


def resample_matrix(
    start: torch.Tensor, length: torch.Tensor, n_in: int, n_out: int, kernel: str = "triangle"
) -> torch.Tensor:
    """``(B, n_out, n_in)`` float64 dense 1-D resampling matrices: row ``i`` of sample ``b``
    holds the weights of output pixel ``i`` of ``[start, start + length)`` resampled to
    ``n_out`` pixels (:func:`~freqdata.augment.resample.axis_weights`)."""
    index, weight = axis_weights(start, length, n_out, kernel)
    m = weight.new_zeros((index.shape[0], n_out, n_in))
    return m.scatter_add_(2, index, weight)


def resized_crop_pixels(
    x: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], kernel: str = "triangle"
) -> torch.Tensor:
    """Per-sample pixel boxes of ``x`` ``(B, C, H, W)`` resampled to ``size`` ``(h, w)``.

    ``boxes``: ``(B, 4)`` int ``(top, left, h, w)`` inside the ``H x W`` image. Integer
    ``x`` (uint8 images) is computed in float32; returns ``(B, C, h, w)`` in ``x``'s float
    dtype, unrounded and unclipped (torchvision rounds uint8 output; feed the float result
    straight into normalization instead).
    """
    if x.ndim != 4:
        raise UsageError(f"resized_crop_pixels needs a (B, C, H, W) batch, got {tuple(x.shape)}")
    xf = x if x.is_floating_point() else x.to(torch.float32)
    b, _, hh, ww = xf.shape
    boxes = torch.as_tensor(boxes, dtype=torch.int64).to(xf.device)
    if boxes.shape != (b, 4):
        raise UsageError(f"boxes must be ({b}, 4) (top, left, h, w), got {tuple(boxes.shape)}")
    top, left, h, w = boxes.unbind(1)
    if bool(((top < 0) | (left < 0) | (h <= 0) | (w <= 0)).any()) or bool(
        ((top + h > hh) | (left + w > ww)).any()
    ):
        raise UsageError(f"boxes do not fit a {hh}x{ww} image")
    mh = resample_matrix(top, h, hh, int(size[0]), kernel).to(xf.dtype)[:, None]
    mw = resample_matrix(left, w, ww, int(size[1]), kernel).to(xf.dtype)[:, None]
    return mh @ xf @ mw.transpose(-1, -2)
