"""Resized crop of DCT cubes in the DCT domain, batched (torch, on the batch's device).

Per sample, a pixel box ``(top, left, h, w)`` of the image is resampled to a fixed output of
``(Hob, Wob)`` blocks. The resampling is separable and linear in the pixels, ``P -> A_h P
A_w^T`` with ``A_h`` ``(8 Hob, 8 Hb)`` and ``A_w`` ``(8 Wob, 8 Wb)``; folded with the block
IDCT before and the block DCT after it becomes ``X -> M_h X M_w^T`` on the coefficient planes
of :mod:`freqdata.augment.layout` (``M = D_out A D_in^T``, ``D`` block-diagonal 8x8 DCT
matrices), so the whole batch is two batched matmuls per group of components.

Kernels (``kernel=``), both exactly torchvision's crop-then-resize of the box (the box's
edge samples are replicated, pixels outside the box are never read):

* ``"triangle"`` (default): antialiased bilinear — a triangle filter whose support grows with
  the reduction factor, weights renormalized at the box edges. It is PIL's ``BILINEAR``
  resize and ``torch.nn.functional.interpolate(mode="bilinear", antialias=True)``, i.e.
  torchvision's ``resized_crop(..., antialias=True)`` (its default), and the filter of the
  pixel path's geometries (docs/conventions.md).
* ``"bilinear"``: bilinear interpolation with half-pixel centres and no antialiasing
  (``interpolate(mode="bilinear", align_corners=False, antialias=False)``).

Exactness: with all 64 coefficients of a component the result is the block DCT of the
resampled pixels of the block IDCT of the input, to float rounding (tested on real images
against a float64 numpy IDCT → ``interpolate`` → DCT). With a preset's channels, the
unstored coefficients are taken as 0 (the input is the low-pass image the stored channels
describe) and only the stored channels are computed; the error this makes against the
full-information result is measured in docs/loader.md ("Augmentation").

Cost per sample and group of ``n`` components: the matrices (``8 Hob x Hb |V|`` per axis) and
``n`` products of sizes ``Hob|V| x Hb|V| x Wb|U|`` and ``Hob|V| x Wb|U| x Wob|U|`` (the
cheaper order is chosen), where ``V``/``U`` are the stored vertical/horizontal frequencies
(4 of 8 for dctnet-24: 1/16 of the full-coefficient cost).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from freqdata.augment.layout import as_channel_info, from_planes, plane_groups, to_planes
from freqdata.augment.sampling import RRC_RATIO, RRC_SCALE, draw_boxes
from freqdata.dct import BLOCK, dct_matrix
from freqdata.errors import UsageError
from freqdata.transforms import ChannelInfo

__all__ = ["KERNELS", "RandomResizedCrop", "axis_matrix", "axis_weights", "resized_crop"]

KERNELS = ("triangle", "bilinear")


def axis_weights(
    start: torch.Tensor, length: torch.Tensor, n_out: int, kernel: str = "triangle"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse rows of the 1-D resampling matrices of a batch of intervals.

    ``start``, ``length``: ``(B,)`` integer tensors, the box along one axis (pixels).
    Returns ``index`` ``(B, n_out, K)`` int64 (absolute input pixels, inside the box) and
    ``weight`` ``(B, n_out, K)`` float64 (rows sum to 1): output ``i`` is
    ``sum_k weight[i, k] * input[index[i, k]]``.
    """
    if kernel not in KERNELS:
        raise UsageError(f"unknown kernel {kernel!r}: choose one of {', '.join(KERNELS)}")
    dev = start.device
    length = length.to(torch.float64)[:, None, None]
    scale = length / n_out
    i = torch.arange(n_out, device=dev, dtype=torch.float64)[None, :, None]
    if kernel == "bilinear":
        src = ((i + 0.5) * scale - 0.5).clamp(min=0)
        i0 = src.floor()
        frac = src - i0
        i1 = torch.minimum(i0 + 1, length - 1)
        index = torch.cat([i0, i1], -1)
        weight = torch.cat([1 - frac, frac], -1)
    else:
        support = scale.clamp(min=1.0)
        centre = (i + 0.5) * scale
        xmin = (centre - support + 0.5).trunc().clamp(min=0)
        xmax = torch.minimum((centre + support + 0.5).trunc(), length)
        k = int(torch.ceil(2 * support.max()).item()) + 2
        j = xmin + torch.arange(k, device=dev, dtype=torch.float64)
        weight = (1 - ((j - centre + 0.5) / support).abs()).clamp(min=0) * (j < xmax)
        weight = weight / weight.sum(-1, keepdim=True)
        index = torch.minimum(j, length - 1)
    return index.to(torch.int64) + start.to(torch.int64)[:, None, None], weight


def axis_matrix(
    start: torch.Tensor,
    length: torch.Tensor,
    out_blocks: int,
    in_blocks: int,
    freqs: Sequence[int],
    kernel: str = "triangle",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Coefficient-domain matrices ``M = D_out A D_in^T`` of one axis, ``(B, out_blocks |F|,
    in_blocks |F|)``, restricted to the frequencies ``freqs`` (rows and columns ordered
    block-major: ``block * |F| + f``). ``A`` resamples ``[start, start + length)`` of
    ``8 in_blocks`` pixels to ``8 out_blocks`` (:func:`axis_weights`). Built in float64 for a
    float64 ``dtype``, otherwise in float32 (then cast to ``dtype``)."""
    index, weight = axis_weights(start, length, out_blocks * BLOCK, kernel)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    weight = weight.to(work)
    b, n_out = index.shape[:2]
    nf = len(freqs)
    d = torch.as_tensor(dct_matrix(BLOCK)[list(freqs)], device=index.device, dtype=work)
    src = weight[..., None] * d.T[index % BLOCK]  # (B, n_out, K, |F|)
    g = weight.new_zeros((b, n_out, in_blocks, nf))
    g.scatter_add_(2, (index // BLOCK)[..., None].expand(-1, -1, -1, nf), src)
    g = g.reshape(b, out_blocks, BLOCK, in_blocks * nf)
    m = d @ g  # (B, out_blocks, |F|, in_blocks |F|)
    return m.reshape(b, out_blocks * nf, in_blocks * nf).to(dtype)


def _check_boxes(boxes: torch.Tensor, hb: int, wb: int) -> torch.Tensor:
    boxes = torch.as_tensor(boxes, dtype=torch.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise UsageError(f"boxes must be (B, 4) (top, left, h, w), got {tuple(boxes.shape)}")
    top, left, h, w = boxes.unbind(1)
    bad = (top < 0) | (left < 0) | (h <= 0) | (w <= 0)
    bad |= (top + h > hb * BLOCK) | (left + w > wb * BLOCK)
    if bool(bad.any()):
        raise UsageError(f"boxes {boxes[bad][:3].tolist()} do not fit a {hb}x{wb}-block image")
    return boxes


def resized_crop(
    x: torch.Tensor,
    channels: ChannelInfo | Sequence[str],
    boxes: torch.Tensor,
    size: tuple[int, int],
    kernel: str = "triangle",
) -> torch.Tensor:
    """Resample pixel boxes of a DCT batch to ``size`` blocks, in the DCT domain.

    ``x``: ``(B, C, Hb, Wb)`` raw coefficients (any dtype; integers computed in float32);
    ``channels``: the store's channel names (or :class:`~freqdata.transforms.ChannelInfo`);
    ``boxes``: ``(B, 4)`` int ``(top, left, h, w)`` pixels inside the ``8 Hb x 8 Wb`` image;
    ``size``: ``(Hob, Wob)`` output blocks. Returns ``(B, C, Hob, Wob)`` float, same channel
    order: torchvision's ``resized_crop(img, top, left, h, w, (8 Hob, 8 Wob))`` of the
    pixels, with the named ``kernel`` (module docstring), as DCT coefficients.
    """
    if x.ndim != 4:
        raise UsageError(f"resized_crop needs a (B, C, Hb, Wb) batch, got {tuple(x.shape)}")
    xf = x if x.is_floating_point() else x.to(torch.float32)
    b, c, hb, wb = xf.shape
    hob, wob = int(size[0]), int(size[1])
    if hob <= 0 or wob <= 0:
        raise UsageError(f"output size {size} must be positive")
    boxes = _check_boxes(boxes, hb, wb).to(xf.device)
    if len(boxes) != b:
        raise UsageError(f"{len(boxes)} boxes for a batch of {b}")
    info = as_channel_info(channels)
    if len(info.k) != c:
        raise UsageError(f"{len(info.k)} channel names for a cube of {c} channels")
    out = xf.new_empty((b, c, hob, wob))
    mats: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}

    def matrix(axis: str, freqs: tuple[int, ...]) -> torch.Tensor:
        if (axis, freqs) not in mats:
            s, n, o, i = (0, 2, hob, hb) if axis == "h" else (1, 3, wob, wb)
            m = axis_matrix(boxes[:, s], boxes[:, n], o, i, freqs, kernel, xf.dtype)
            mats[axis, freqs] = m[:, None]
        return mats[axis, freqs]

    for g in plane_groups(info):
        planes = to_planes(xf, g)  # (B, n, Hb|V|, Wb|U|)
        mh, mw = matrix("h", g.v), matrix("w", g.u)
        hi, wi = planes.shape[-2:]
        ho, wo = mh.shape[-2], mw.shape[-2]
        if ho * hi * wi + ho * wi * wo <= hi * wi * wo + ho * hi * wo:
            y = (mh @ planes) @ mw.transpose(-1, -2)
        else:
            y = mh @ (planes @ mw.transpose(-1, -2))
        from_planes(y, g, out)
    return out


class RandomResizedCrop:
    """torchvision's ``RandomResizedCrop`` on DCT batches: boxes drawn by
    :func:`~freqdata.augment.sampling.resized_crop_params` (CPU generator seeded with
    ``seed``), resampled by :func:`resized_crop` to ``size`` blocks with ``kernel``.

    Call with ``x`` ``(B, C, Hb, Wb)`` and optionally ``image_size`` ``(B, 2)`` (pixel height,
    width of each image inside its grid, e.g. the size before padding to whole blocks;
    default the whole grid); returns ``(y, boxes)`` with ``boxes`` ``(B, 4)`` int64.
    ``step``: boxes are drawn on the image shrunk ``step`` times (``size // step`` pixels)
    and scaled back, i.e. on a ``step``-pixel lattice: a DCT arm at ``step`` times an RGB
    arm's resolution then draws the *same* boxes as that arm (same seed, ``step=1`` there).
    """

    def __init__(
        self,
        channels: ChannelInfo | Sequence[str],
        size: tuple[int, int],
        *,
        scale: tuple[float, float] = RRC_SCALE,
        ratio: tuple[float, float] = RRC_RATIO,
        kernel: str = "triangle",
        seed: int = 0,
        step: int = 1,
    ) -> None:
        if kernel not in KERNELS:
            raise UsageError(f"unknown kernel {kernel!r}: choose one of {', '.join(KERNELS)}")
        if int(step) < 1:
            raise UsageError(f"box step must be a positive int, got {step!r}")
        self.step = int(step)
        self.channels = as_channel_info(channels)
        self.size = (int(size[0]), int(size[1]))
        self.scale, self.ratio, self.kernel = scale, ratio, kernel
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(
        self, x: torch.Tensor, image_size: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, hb, wb = x.shape
        if image_size is None:
            hs, ws = hb * BLOCK, wb * BLOCK
        else:
            hs, ws = torch.as_tensor(image_size).cpu().unbind(1)
        boxes = draw_boxes(hs, ws, b, self.generator, self.scale, self.ratio, self.step)
        return resized_crop(x, self.channels, boxes, self.size, self.kernel), boxes
