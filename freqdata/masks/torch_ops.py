"""Torch twins of the mask encoders, batched, on the caller's device (CPU or GPU).

* :func:`dct_encode_torch` / :func:`dct_decode_torch` — the same transform and zigzag
  layout as :func:`freqdata.masks.dct_encode` / :func:`~freqdata.masks.dct_decode`,
  computed in the input's floating dtype (float32 for bool / integer masks; pass float64
  for reference-grade results). The partial DCT basis is cached per (K, n, device, dtype).
* :func:`crop_resize_torch` — ROIAlign (``aligned=True``) crops of image masks to K x K,
  exactly :func:`freqdata.masks.crop_resize` with a fixed ``sampling_ratio``, implemented
  with index gathers on the (bool / uint8 / float) masks as they are, so no float copy of
  the full-image masks is made.
* :func:`torch_targets` — DCT-Mask training targets for proposal boxes: ROIAlign crop,
  ``>= 0.5``, partial DCT; the whole batch in a handful of kernels.

torchvision is not needed.
"""

from __future__ import annotations

import torch

from freqdata.errors import UsageError
from freqdata.masks.dctmask import _basis_t, _plan

__all__ = ["crop_resize_torch", "dct_decode_torch", "dct_encode_torch", "torch_targets"]

_CACHE: dict[tuple[int, int, str, torch.dtype], tuple[int, int, torch.Tensor, torch.Tensor,
                                                        torch.Tensor]] = {}
_GATHER_ELEMENTS = 1 << 24  # samples gathered per chunk in crop_resize_torch


def _cached(k: int, n: int, device: torch.device, dtype: torch.dtype):
    """``(r, c, D[:r]^T, D[:c]^T, flat)`` on the device: ``flat`` indexes the ``(c, r)``
    transposed coefficient block at the n zigzag positions."""
    key = (k, n, str(device), dtype)
    hit = _CACHE.get(key)
    if hit is None:
        r, c, v, u = _plan(k, n)
        dr = torch.tensor(_basis_t(k, r).copy(), dtype=dtype, device=device)
        dc = torch.tensor(_basis_t(k, c).copy(), dtype=dtype, device=device)
        flat = torch.tensor(u * r + v, device=device)
        hit = _CACHE[key] = (r, c, dr, dc, flat)
    return hit


def _floating(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.float32)


def dct_encode_torch(masks: torch.Tensor, n: int = 300) -> torch.Tensor:
    """DCT-Mask vectors ``(..., n)`` of ``(..., K, K)`` masks, on their device.

    Same values and order as :func:`freqdata.masks.dct_encode` (orthonormal DCT-II, first n
    of the zigzag extended to K x K), in the input's floating dtype (float32 for bool /
    integer input). Two batched GEMMs with only the needed basis rows.
    """
    if masks.dim() < 2 or masks.shape[-1] != masks.shape[-2]:
        raise UsageError(f"masks must be (..., K, K), got shape {tuple(masks.shape)}")
    x = _floating(masks)
    k = x.shape[-1]
    lead = x.shape[:-2]
    r, c, dr, dc, flat = _cached(k, n, x.device, x.dtype)
    x = x.reshape(-1, k, k)
    y = x @ dc  # (M, K, c): [m, i, u] = (X D[:c]^T)[i, u]
    z = y.transpose(1, 2) @ dr  # (M, c, r): [m, u, v] = C[v, u]
    return z.reshape(z.shape[0], c * r)[:, flat].reshape(*lead, n)


def dct_decode_torch(vectors: torch.Tensor, k: int = 128) -> torch.Tensor:
    """Soft masks ``(..., k, k)`` from DCT-Mask vectors ``(..., n)``, on their device: the
    twin of :func:`freqdata.masks.dct_decode` (scatter at the zigzag positions, partial
    inverse DCT), in the input's floating dtype. Not clipped."""
    v = _floating(vectors)
    n = v.shape[-1]
    lead = v.shape[:-1]
    r, c, dr, dc, flat = _cached(k, n, v.device, v.dtype)
    v = v.reshape(-1, n)
    ct = torch.zeros(v.shape[0], c * r, dtype=v.dtype, device=v.device)
    ct[:, flat] = v
    y = ct.reshape(-1, c, r) @ dr.T  # (M, c, K): [m, u, i] = (D[:r]^T C)[i, u]
    x = y.transpose(1, 2) @ dc.T  # (M, K, K)
    return x.reshape(*lead, k, k)


def _axis_samples(
    start: torch.Tensor, length: torch.Tensor, size: torch.Tensor, k: int, s: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ROIAlign (aligned) sample rows/cols along one axis for every box, ``size`` ``(M,)``
    the axis length of each box's image: ``(low, high, w_low, w_high)``, each ``(M, k*s)``;
    invalid samples have zero weights and the ``1/s`` average is folded into the weights."""
    dtype, device = start.dtype, start.device
    p = torch.arange(k, dtype=dtype, device=device)[:, None]
    t = (torch.arange(s, dtype=dtype, device=device)[None, :] + 0.5) / s
    offs = (p + t).reshape(1, k * s)
    pos = (start - 0.5)[:, None] + offs * (length / k)[:, None]
    last = (size - 1)[:, None]
    valid = (pos >= -1.0) & (pos <= size[:, None].to(dtype))
    pos = pos.clamp(min=0.0)
    low = pos.floor().to(torch.int64)
    edge = low >= last
    low = torch.where(edge, last.expand_as(low), low)
    high = torch.where(edge, low, low + 1)
    frac = torch.where(edge, torch.zeros_like(pos), pos - low.to(dtype))
    zero = torch.zeros_like(pos)
    w_low = torch.where(valid, 1.0 - frac, zero) / s
    w_high = torch.where(valid, frac, zero) / s
    return low, high, w_low, w_high


def crop_resize_torch(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    k: int = 128,
    *,
    sampling_ratio: int = 1,
    mask_index: torch.Tensor | None = None,
    image_sizes: torch.Tensor | None = None,
) -> torch.Tensor:
    """ROIAlign crops ``(M, k, k)`` of image masks ``(G, H, W)`` (bool / uint8 / float, any
    device) in boxes ``(M, 4)`` xyxy: box ``i`` samples ``masks[mask_index[i]]`` (default
    ``mask_index = arange(M)``, then ``G == M``). ``image_sizes`` ``(G, 2)`` ``(h, w)``: the
    true image size of each mask when masks of different images are zero-padded to one
    ``(H, W)``, so that ROIAlign's border rules (samples beyond ``h``/``w`` are 0, samples
    within one pixel of the border are clamped) use the image's own edge; default
    ``(H, W)`` for all.

    Exactly :func:`freqdata.masks.crop_resize` with the same ``sampling_ratio`` (>= 1 here:
    ``s x s`` bilinear samples per cell, averaged; detectron2 ``ROIAlign(aligned=True)``).
    Computed in the boxes' floating dtype (float32 for integer boxes); the result is soft,
    in [0, 1] for binary masks.
    """
    if masks.dim() != 3:
        raise UsageError(f"masks must be (G, H, W), got shape {tuple(masks.shape)}")
    if sampling_ratio < 1:
        raise UsageError(f"sampling_ratio must be >= 1 here, got {sampling_ratio}")
    b = boxes.to(masks.device)
    b = b if b.is_floating_point() else b.to(torch.float32)
    b = b.reshape(-1, 4)
    m = b.shape[0]
    g, h, w = masks.shape
    if mask_index is None:
        if g != m:
            raise UsageError(f"{g} masks for {m} boxes: pass mask_index")
        index = torch.arange(m, device=masks.device)
    else:
        index = mask_index.to(device=masks.device, dtype=torch.int64).reshape(-1)
        if index.shape[0] != m:
            raise UsageError(f"mask_index has {index.shape[0]} entries for {m} boxes")
    if image_sizes is None:
        sizes = torch.tensor([h, w], device=masks.device).expand(m, 2)
    else:
        sizes = image_sizes.to(device=masks.device, dtype=torch.int64).reshape(-1, 2)
        if sizes.shape[0] != g:
            raise UsageError(f"image_sizes has {sizes.shape[0]} rows for {g} masks")
        sizes = sizes[index]
    s = sampling_ratio
    flat = masks.reshape(-1)
    out = torch.empty(m, k, k, dtype=b.dtype, device=masks.device)
    per_box = (k * s) ** 2
    step = max(1, _GATHER_ELEMENTS // per_box)
    for a in range(0, m, step):
        bb, ii, sz = b[a : a + step], index[a : a + step], sizes[a : a + step]
        ylo, yhi, wylo, wyhi = _axis_samples(bb[:, 1], bb[:, 3] - bb[:, 1], sz[:, 0], k, s)
        xlo, xhi, wxlo, wxhi = _axis_samples(bb[:, 0], bb[:, 2] - bb[:, 0], sz[:, 1], k, s)
        base = (ii * (h * w))[:, None, None]
        acc = None
        for yy, wy in ((ylo, wylo), (yhi, wyhi)):
            row = base + (yy * w)[:, :, None]
            for xx, wx in ((xlo, wxlo), (xhi, wxhi)):
                vals = flat[row + xx[:, None, :]].to(b.dtype)
                term = vals * wy[:, :, None] * wx[:, None, :]
                acc = term if acc is None else acc + term
        assert acc is not None
        if s > 1:
            acc = acc.reshape(-1, k, s, k, s).sum(dim=(2, 4))
        out[a : a + step] = acc
    return out


def torch_targets(
    full_masks: torch.Tensor,
    boxes: torch.Tensor,
    k: int = 128,
    n: int = 300,
    *,
    sampling_ratio: int = 1,
    threshold: float = 0.5,
    mask_index: torch.Tensor | None = None,
    image_sizes: torch.Tensor | None = None,
) -> torch.Tensor:
    """DCT-Mask training targets ``(M, n)`` for boxes ``(M, 4)`` xyxy (e.g. proposals) over
    image masks ``(G, H, W)`` (bool / uint8 / float, any device; ``mask_index`` maps box → mask
    and ``image_sizes`` gives padded masks' true sizes, as in :func:`crop_resize_torch`).

    ROIAlign crop to ``k x k`` (aligned, ``sampling_ratio`` samples per cell and axis),
    binarized ``>= threshold`` (as DCT-Mask binarizes its targets), then the partial DCT of
    :func:`dct_encode_torch`. Dtype: the boxes' floating dtype (float32 for integer boxes).
    """
    soft = crop_resize_torch(full_masks, boxes, k, sampling_ratio=sampling_ratio,
                             mask_index=mask_index, image_sizes=image_sizes)
    return dct_encode_torch((soft >= threshold).to(soft.dtype), n)
