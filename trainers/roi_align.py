"""RoIAlign (He et al. 2017; ``aligned=True`` as detectron2's ROIAlignV2) and FPN level assignment.

:func:`roi_align` — ``(M, C, k, k)`` features of boxes on one feature map, with exactly the
sampling of :func:`freqdata.masks.crop_resize_torch` (its per-axis sample positions and
weights are reused): a box ``[x0, y0, x1, y1]`` in image pixels is scaled by
``spatial_scale`` (1 / stride); output cell ``(p, q)`` averages ``s x s`` bilinear samples
at ``y = y0' + (p + (a + 0.5) / s) * h' / k - 0.5`` (and the same in x), feature-pixel
units; a sample with ``y < -1`` or ``y > H`` is 0, otherwise ``y`` is clamped to
``[0, H - 1]`` (``bilinear_interpolate`` of ROIAlign). ``sampling_ratio`` ``s`` is fixed
(>= 1; ROIAlign's adaptive ``0`` is not supported: it makes the sample count depend on the
box). Computed as two batched products with per-box interpolation matrices
(``A_y (k, H)``, ``A_x (k, W)``: ``out[m, c] = A_y F[b_m, c] A_x^T``), differentiable in the
features. torchvision is not needed: ``backend="auto"`` uses
``torchvision.ops.roi_align(..., aligned=True)`` (the same operation with the same
``sampling_ratio``; compared in the tests) when torchvision imports and its compiled ops
load, this implementation otherwise (``backend="torch"`` forces it). The PyPI torchvision
wheels are linked against CUDA torch: with a CPU-only torch their ops do not load, and the
own implementation is used.

:func:`assign_levels` — Mask R-CNN's FPN rule ``level = floor(k0 + log2(sqrt(wh) / s0))``
clamped to the available levels, with ``k0 = 4``. The canonical size ``s0`` is 224 for
Mask R-CNN's ~800-pixel images; the trainer scales it with the image size it uses
(``224 * canvas / 800``, 90 for a 320 canvas), so an object covers the same fraction of
the image at the same level as in Mask R-CNN.

:class:`MultiScaleRoIAlign` — each box pooled from its assigned level of an FPN.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import torch
from torch import nn

from freqdata.errors import UsageError
from freqdata.masks.torch_ops import _axis_samples

__all__ = ["MultiScaleRoIAlign", "assign_levels", "roi_align", "torchvision_roi_align"]


def _interp_matrix(
    start: torch.Tensor, length: torch.Tensor, size: int, k: int, s: int
) -> torch.Tensor:
    """``(M, k, size)``: ROIAlign's averaged bilinear weights along one axis."""
    m = start.shape[0]
    sizes = torch.full((m,), size, dtype=torch.int64, device=start.device)
    low, high, w_low, w_high = _axis_samples(start, length, sizes, k, s)
    a = torch.zeros(m, k * s, size, dtype=start.dtype, device=start.device)
    a.scatter_add_(2, low[..., None], w_low[..., None])
    a.scatter_add_(2, high[..., None], w_high[..., None])
    return a.reshape(m, k, s, size).sum(2)


@cache
def torchvision_roi_align() -> Any | None:
    """``torchvision.ops.roi_align`` when torchvision imports and its ops run, else None."""
    try:
        from torchvision.ops import roi_align as tv

        tv(torch.zeros(1, 1, 2, 2), torch.zeros(1, 5), (1, 1), 1.0, 1, True)
    except Exception:  # not installed, or a build whose compiled ops do not load
        return None
    return tv


def roi_align(
    features: torch.Tensor,
    boxes: torch.Tensor,
    batch_index: torch.Tensor,
    output_size: int,
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    backend: str = "auto",
) -> torch.Tensor:
    """RoIAlign (aligned) of boxes ``(M, 4)`` xyxy in image pixels on ``features``
    ``(B, C, H, W)`` (any floating dtype, any device); ``batch_index`` ``(M,)`` int: the image
    of each box → ``(M, C, output_size, output_size)`` in the features' dtype. ``backend``:
    ``"auto"`` (torchvision when usable), ``"torch"`` (this module's), ``"torchvision"``.
    Module docstring for the exact sampling."""
    if features.dim() != 4:
        raise UsageError(f"features must be (B, C, H, W), got {tuple(features.shape)}")
    if sampling_ratio < 1:
        raise UsageError(f"sampling_ratio must be >= 1, got {sampling_ratio}")
    if backend not in ("auto", "torch", "torchvision"):
        raise UsageError(f"backend must be auto, torch or torchvision, got {backend!r}")
    # box geometry and sampling weights in >= float32, also under bf16 autocast (bf16 would
    # round coordinates to 2-pixel steps above 256); cast to the features' dtype at the end
    geo = torch.promote_types(features.dtype, torch.float32)
    b = boxes.reshape(-1, 4).to(device=features.device, dtype=geo) * spatial_scale
    idx = batch_index.reshape(-1).to(device=features.device, dtype=torch.int64)
    if idx.shape[0] != b.shape[0]:
        raise UsageError(f"{idx.shape[0]} batch indices for {b.shape[0]} boxes")
    _, c, h, w = features.shape
    k = output_size
    if b.shape[0] == 0:
        return features.new_zeros(0, c, k, k)
    tv = torchvision_roi_align() if backend != "torch" else None
    if backend == "torchvision" and tv is None:
        raise UsageError("torchvision.ops.roi_align is not usable here")
    if tv is not None:
        rois = torch.cat([idx[:, None].to(geo), b / spatial_scale], 1)
        out = tv(features.to(geo), rois, (k, k), spatial_scale, sampling_ratio, True)
        return out.to(features.dtype)
    ay = _interp_matrix(b[:, 1], b[:, 3] - b[:, 1], h, k, sampling_ratio).to(features.dtype)
    ax = _interp_matrix(b[:, 0], b[:, 2] - b[:, 0], w, k, sampling_ratio).to(features.dtype)
    # per image, so the (C, H, W) map is contracted in place instead of copied for every box
    order = torch.argsort(idx, stable=True)
    images, counts = torch.unique_consecutive(idx[order], return_counts=True)
    parts = []
    for i, rows in zip(images.tolist(), torch.split(order, counts.tolist()), strict=True):
        x = torch.einsum("chw,mlw->mchl", features[i], ax[rows])  # (m, C, H, k)
        parts.append(torch.einsum("mkh,mchl->mckl", ay[rows], x))  # (m, C, k, k)
    return torch.cat(parts)[torch.argsort(order)]


def assign_levels(
    boxes: torch.Tensor,
    min_level: int,
    max_level: int,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
) -> torch.Tensor:
    """FPN level of each box ``(M, 4)`` xyxy → ``(M,)`` int64:
    ``clamp(floor(canonical_level + log2(sqrt(w h) / canonical_size + 1e-8)), min, max)``
    (detectron2's ``assign_boxes_to_levels``)."""
    b = boxes.reshape(-1, 4)
    size = ((b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)).sqrt()
    lvl = torch.floor(canonical_level + torch.log2(size / canonical_size + 1e-8))
    return lvl.clamp(min_level, max_level).to(torch.int64)


class MultiScaleRoIAlign(nn.Module):
    """Pool each box from its FPN level (:func:`assign_levels`, :func:`roi_align`).

    ``strides``: the levels' strides in image pixels, finest first (powers of 2, e.g.
    ``MaskBackbone.strides``); ``canonical_size``: ``s0`` of :func:`assign_levels`.
    ``forward(features list, boxes (M, 4), batch_index (M,))`` → ``(M, C, k, k)``.
    """

    def __init__(
        self,
        strides: list[int],
        output_size: int = 14,
        sampling_ratio: int = 2,
        canonical_size: float = 224.0,
    ) -> None:
        super().__init__()
        self.strides = list(strides)
        self.levels = [round(math.log2(s)) for s in strides]
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        self.canonical_size = canonical_size

    def forward(
        self, features: list[torch.Tensor], boxes: torch.Tensor, batch_index: torch.Tensor
    ) -> torch.Tensor:
        if len(features) != len(self.strides):
            raise UsageError(f"{len(features)} feature maps for {len(self.strides)} strides")
        lvl = assign_levels(boxes, self.levels[0], self.levels[-1], self.canonical_size)
        k = self.output_size
        out = features[0].new_zeros(boxes.shape[0], features[0].shape[1], k, k)
        for i, (f, s) in enumerate(zip(features, self.strides, strict=True)):
            rows = torch.nonzero(lvl == self.levels[i]).flatten()
            if rows.numel():
                out[rows] = roi_align(f, boxes[rows], batch_index[rows], k, 1.0 / s,
                                      self.sampling_ratio)  # fmt: skip
        return out
