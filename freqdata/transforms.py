"""Batch transforms of DCT cubes on the device (torch; GPU when there is one, CPU otherwise).

Every function takes and returns tensors on the caller's device; batches are ``(B, C, Hb,
Wb)`` (channels first, one channel per stored coefficient, names ``Y<k>``, ``Cb<k>``,
``Cr<k>`` with ``k = 8v + u``). Integer inputs are computed in float32.

* :func:`normalize` / :class:`Normalize` — ``(x - mean) / std`` per channel with the store's
  statistics, float32 on the device; a channel with zero std is divided by 1.
* :func:`center_crop`, :func:`random_crop` — block-aligned crops (whole 8x8 blocks); the
  random crop draws one offset per sample from a ``torch.Generator``.
* :func:`hflip`, :func:`random_hflip` — the horizontal flip of the *pixels*, done in the DCT
  domain: block columns mirrored and coefficients with odd horizontal frequency ``u``
  negated (a mirrored 8-sample block has DCT-II coefficients ``(-1)^u X[u]``). Exactly the
  DCT of the flipped image when its width is whole blocks (tested on real images). Flip
  raw coefficients, *before* :func:`normalize` (a mean that is not zero does not flip).
* :func:`upsample_chroma` — native-chroma stores (``luma`` + ``chroma`` parts) to the luma
  grid by exact DCT-domain box (nearest) upsampling: output block ``(a, b)`` of a source
  block ``C`` is ``A_a C A_b^T`` with ``A = freqdata.coefficients.upsample_matrix`` (a
  ``conv_transpose2d`` with kernel = stride = factor). Exact when all 64 coefficients of
  the chroma blocks are stored (preset ``all``: max error 0.5 against the full-chroma
  encoding, which rounds once). With a selection (``dctnet-24`` keeps ``0, 1, 8, 9``) the
  result is, exactly, the selected coefficients of the box-upsampled *low-pass* chroma,
  i.e. of the chroma plane rebuilt from the stored coefficients only (the unstored ones
  taken as zero; tested against that pixel-domain construction). Error against
  ``encode_image(..., chroma="full")`` of the same files (the 10 4:2:0 ants/bees JPEGs,
  33,685 blocks; :func:`freqdata.bench.loader.measure_chroma_upsampling`): DC (Cb0, Cr0)
  RMS 4.0 / 3.6 coefficient units (3 % of the channel's std), but the first AC channels
  are poor: Cb1, Cb8, Cr1, Cr8 RMS 13-15 (84-87 % of their std), Cb9, Cr9 RMS 8.6 / 7.5
  (98 %), max 282 — a half-resolution block's ``u, v = 1`` at full resolution comes mostly
  from its ``u, v = 2, 3``, which dctnet-24 drops. Keeping chroma ``u, v <= 3`` (16
  coefficients per component at 4:2:0: as many values per image area as 4 at full chroma)
  brings these to 7-16 % (RMS 1.2); otherwise encode ``chroma="full"``.
* :class:`DeviceAugment` — the usual composition for training and evaluation:
  transport decode → chroma upsampling → crop → flip → normalize.

Mirroring the blocks of a cube whose width is *not* whole blocks in the source image moves
the encoder's edge padding to the left edge; stores always hold whole blocks, so this is a
property of the data, not an error of the flip.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from freqdata.coefficients import upsample_matrix
from freqdata.dct import BLOCK
from freqdata.errors import UsageError

__all__ = [
    "ChannelInfo",
    "DeviceAugment",
    "Normalize",
    "center_crop",
    "channel_info",
    "hflip",
    "normalize",
    "random_crop",
    "random_hflip",
    "upsample_chroma",
    "upsample_weight",
]

_NAME = re.compile(r"^(Y|Cb|Cr)(\d+)$")
_COMPONENTS = {"Y": 0, "Cb": 1, "Cr": 2}


class ChannelInfo(NamedTuple):
    """Per channel: component (0 = Y, 1 = Cb, 2 = Cr) and natural index ``k = 8v + u``."""

    component: np.ndarray
    k: np.ndarray

    @property
    def u(self) -> np.ndarray:
        """Horizontal frequency of each channel."""
        return self.k % BLOCK

    @property
    def v(self) -> np.ndarray:
        """Vertical frequency of each channel."""
        return self.k // BLOCK

    def odd_u(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(C,) bool: channels that change sign under a horizontal flip."""
        return torch.as_tensor(self.u % 2 == 1, device=device)


def channel_info(names: Sequence[str]) -> ChannelInfo:
    """Parse store channel names (``Y<k>``, ``Cb<k>``, ``Cr<k>``) into a :class:`ChannelInfo`."""
    comp, ks = [], []
    for n in names:
        m = _NAME.match(n)
        if not m or not 0 <= int(m.group(2)) < BLOCK * BLOCK:
            raise UsageError(f"not a DCT channel name: {n!r} (expected Y<k>, Cb<k>, Cr<k>)")
        comp.append(_COMPONENTS[m.group(1)])
        ks.append(int(m.group(2)))
    return ChannelInfo(np.array(comp, dtype=np.int64), np.array(ks, dtype=np.int64))


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.float32)


# --------------------------------------------------------------------------------------------
# normalization
# --------------------------------------------------------------------------------------------
def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel of ``(B, C, H, W)`` (or ``(C, H, W)``).

    ``mean``/``std`` ``(C,)``; zero std counts as 1. Integer ``x`` gives float32; otherwise
    the result has ``x``'s dtype.
    """
    x = _float(x)
    m = mean.to(device=x.device, dtype=x.dtype)[:, None, None]
    s = std.to(device=x.device, dtype=x.dtype)
    s = torch.where(s == 0, torch.ones_like(s), s)[:, None, None]
    return (x - m) / s


class Normalize(torch.nn.Module):
    """:func:`normalize` with the statistics kept as float32 buffers (moved with ``.to``)."""

    def __init__(self, mean: Any, std: Any) -> None:
        super().__init__()
        mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
        std = torch.as_tensor(np.asarray(std), dtype=torch.float32)
        std = torch.where(std == 0, torch.ones_like(std), std)
        self.register_buffer("mean", mean[:, None, None])
        self.register_buffer("inv_std", 1.0 / std[:, None, None])

    @classmethod
    def from_store(cls, store: Any, device: torch.device | str | None = None) -> Normalize:
        """From an :class:`freqdata.store.ImageStore` (its ``mean``/``std`` ``(C,)`` float64)."""
        return cls(store.mean, store.std).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` any dtype → float32 normalized."""
        return (x.to(torch.float32) - self.mean) * self.inv_std


# --------------------------------------------------------------------------------------------
# crops
# --------------------------------------------------------------------------------------------
def _check_size(x: torch.Tensor, size: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = int(size[0]), int(size[1])
    hb, wb = x.shape[-2:]
    if not (0 < h <= hb and 0 < w <= wb):
        raise UsageError(f"crop {h}x{w} blocks does not fit a {hb}x{wb} grid")
    return h, w, hb, wb


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre ``size = (h, w)`` blocks of ``(..., Hb, Wb)``: offsets ``((Hb-h)//2, (Wb-w)//2)``.

    A view (no copy).
    """
    h, w, hb, wb = _check_size(x, size)
    oy, ox = (hb - h) // 2, (wb - w) // 2
    return x[..., oy : oy + h, ox : ox + w]


def random_crop(
    x: torch.Tensor,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
    *,
    return_offsets: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Block-aligned random crop of ``(B, C, Hb, Wb)`` to ``(B, C, h, w)``, one offset per sample.

    Offsets ``(B, 2)`` int64 (block row, column of the top left) are uniform in
    ``[0, Hb - h] x [0, Wb - w]``, drawn from ``generator`` (on ``x``'s device; None = the
    global one) rows first. ``return_offsets`` also returns them.
    """
    h, w, hb, wb = _check_size(x, size)
    b, c = x.shape[:2]
    dev = x.device
    oy = torch.randint(0, hb - h + 1, (b,), generator=generator, device=dev)
    ox = torch.randint(0, wb - w + 1, (b,), generator=generator, device=dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None].expand(b, c, h, wb)
    y = x.gather(2, rows)
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :].expand(b, c, h, w)
    y = y.gather(3, cols)
    return (y, torch.stack([oy, ox], 1)) if return_offsets else y


# --------------------------------------------------------------------------------------------
# flips
# --------------------------------------------------------------------------------------------
def _odd_u(odd_u: torch.Tensor | Sequence[str] | Sequence[bool], x: torch.Tensor) -> torch.Tensor:
    if isinstance(odd_u, torch.Tensor):
        mask = odd_u
    elif len(odd_u) and isinstance(odd_u[0], str):
        mask = channel_info(odd_u).odd_u()  # type: ignore[arg-type]
    else:
        mask = torch.as_tensor(list(odd_u), dtype=torch.bool)
    mask = mask.to(device=x.device, dtype=torch.bool)
    if mask.shape != (x.shape[-3],):
        raise UsageError(f"{mask.shape[0]} channel flags for {x.shape[-3]} channels")
    return mask


def hflip(
    x: torch.Tensor,
    odd_u: torch.Tensor | Sequence[str] | Sequence[bool],
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Horizontal flip of the image in the DCT domain, ``(..., C, Hb, Wb)`` → same shape/dtype.

    ``odd_u``: the store's channel names, or a ``(C,)`` bool mask of odd-``u`` channels
    (:meth:`ChannelInfo.odd_u`). ``flip``: optional ``(B,)`` bool, flip only those samples.
    Mirrors the block columns and negates odd-``u`` channels: exact (integers stay
    integers; int16 ``-32768`` cannot occur in 8-bit DCT data, ``|X| <= 1024``).
    """
    mask = _odd_u(odd_u, x)
    sign = torch.where(mask, -1, 1).to(x.dtype)[:, None, None]
    y = x.flip(-1) * sign
    if flip is None:
        return y
    return torch.where(flip.to(x.device)[:, None, None, None], y, x)


def random_hflip(
    x: torch.Tensor,
    odd_u: torch.Tensor | Sequence[str] | Sequence[bool],
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample of ``(B, C, Hb, Wb)`` with probability ``p``; returns ``(x, flipped)``.

    ``flipped`` ``(B,)`` bool; draws ``B`` uniforms from ``generator`` (on ``x``'s device).
    """
    flip = torch.rand((x.shape[0],), generator=generator, device=x.device) < p
    return hflip(x, odd_u, flip), flip


# --------------------------------------------------------------------------------------------
# chroma upsampling
# --------------------------------------------------------------------------------------------
def upsample_weight(
    factor: tuple[int, int], indices: Sequence[int], dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """``conv_transpose2d`` weight ``(n, n, fv, fh)`` of exact box upsampling of ``indices``.

    ``W[i, o, a, b] = kron(A_a, A_b)[k_o, k_i]`` with ``A_a = upsample_matrix(fv, a)``,
    ``A_b = upsample_matrix(fh, b)`` and ``k = indices`` (natural ``8v + u``): output block
    ``(a, b)`` of a source block is ``A_a C A_b^T`` restricted to the kept coefficients.
    """
    fv, fh = int(factor[0]), int(factor[1])
    idx = np.asarray(indices, dtype=np.int64)
    w = np.empty((len(idx), len(idx), fv, fh))
    for a in range(fv):
        for b in range(fh):
            m = np.kron(upsample_matrix(fv, a), upsample_matrix(fh, b))[np.ix_(idx, idx)]
            w[:, :, a, b] = m.T  # [in, out]
    return torch.as_tensor(w, dtype=dtype)


def _upsample_uniform(
    chroma: torch.Tensor, factor: tuple[int, int], indices: Sequence[int], groups: int
) -> torch.Tensor:
    if tuple(factor) == (1, 1):
        return chroma
    w = upsample_weight(factor, indices, chroma.dtype).to(chroma.device)
    w = w.repeat(groups, 1, 1, 1)  # (groups * n, n, fv, fh): same map for Cb and Cr
    return F.conv_transpose2d(chroma, w, stride=tuple(int(f) for f in factor), groups=groups)


def upsample_chroma(
    chroma: torch.Tensor,
    factor: tuple[int, int] | torch.Tensor,
    indices: Sequence[int],
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Native chroma ``(B, G*n, Hc, Wc)`` → luma grid ``(B, G*n, H, W)``: exact box upsampling.

    ``indices``: the ``n`` natural coefficient indices stored per chroma component (the
    store's ``config["indices"]["cb"]``; Cr must use the same list); channels are ``G``
    (usually 2: Cb, Cr) groups of ``n``. ``factor``: ``(fv, fh)`` for the whole batch, or a
    ``(B, 2)`` tensor of per-sample factors (the loader's ``chroma_factor``; each sample's
    chroma then sits at the top left of the grid, ``ceil(H / fv) x ceil(W / fh)`` blocks).
    ``size``: output grid ``(H, W)`` (the luma grid; default ``Hc * fv, Wc * fh`` for a
    uniform factor and required for per-sample factors); the upsampled grid is cropped or
    zero-padded at the bottom/right to it. Integer input → float32; float64 for references.
    See the module docstring for the approximation when not all 64 coefficients are kept.
    """
    x = _float(chroma)
    n = len(indices)
    if x.shape[1] % n:
        raise UsageError(f"{x.shape[1]} chroma channels is not a multiple of {n} indices")
    groups = x.shape[1] // n
    if isinstance(factor, torch.Tensor) and factor.ndim == 2:
        if size is None:
            raise UsageError("per-sample factors need the output size (the luma grid)")
        uniq = torch.unique(factor.cpu(), dim=0)
        if len(uniq) == 1:
            factor = tuple(int(f) for f in uniq[0])
        else:
            h, w = size
            out = x.new_zeros((x.shape[0], x.shape[1], h, w))
            fac = factor.to(x.device)
            for f in uniq.tolist():
                sel = (fac == torch.tensor(f, device=x.device)).all(1).nonzero().flatten()
                src = x[sel, :, : -(-h // f[0]), : -(-w // f[1])]
                out[sel] = _fit(_upsample_uniform(src, tuple(f), indices, groups), (h, w))
            return out
    fv, fh = (int(f) for f in (factor.tolist() if isinstance(factor, torch.Tensor) else factor))
    y = _upsample_uniform(x, (fv, fh), indices, groups)
    return y if size is None else _fit(y, size)


def _fit(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop or zero-pad the bottom/right of ``(..., H, W)`` to ``size``."""
    h, w = int(size[0]), int(size[1])
    x = x[..., :h, :w]
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


# --------------------------------------------------------------------------------------------
# composition
# --------------------------------------------------------------------------------------------
class DeviceAugment:
    """Batch dict (from :func:`freqdata.loader.make_loader`) → ``(x, labels)`` on the device.

    Steps: transport decode (``transport``, e.g. :class:`freqdata.transport.Int8Transport`;
    the loader's must be the same) → native chroma upsampled to the luma grid (full, all
    channels in the store's order) → crop (``crop=(h, w)``; ``"random"`` when ``train``,
    else ``"center"``) → random horizontal flip (``flip_p`` when ``train``) → normalization
    with the store's statistics. ``x`` is ``(B, C, h, w)`` float32. Randomness comes from a
    ``torch.Generator`` on ``device`` seeded with ``seed``.
    """

    def __init__(
        self,
        store: Any,
        device: torch.device | str = "cpu",
        *,
        train: bool = True,
        crop: tuple[int, int] | None = None,
        flip_p: float = 0.5,
        seed: int = 0,
        transport: Any = None,
    ) -> None:
        self.device = torch.device(device)
        self.train = train
        self.crop = crop
        self.flip_p = flip_p if train else 0.0
        self.transport = transport
        self.normalize = Normalize.from_store(store, self.device)
        self.odd_u = channel_info(store.channel_names).odd_u(self.device)
        self.chroma_indices = list(store.config["indices"]["cb"])
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def raw(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's coefficients on the device before any augmentation: ``(B, C, Hb, Wb)``
        float32, the store's raw values (not normalized) in the store's channel order
        (transport decoded, native chroma upsampled to the luma grid). The first step of
        :meth:`__call__`; subclasses (:class:`freqdata.augment.TrainAugment`) build on it."""
        if "cubes" in batch:
            x = batch["cubes"].to(self.device, non_blocking=True)
            return self.transport.decode(x) if self.transport is not None else _float(x)
        luma = _float(batch["luma"].to(self.device, non_blocking=True))
        chroma = batch["chroma"].to(self.device, non_blocking=True)
        up = upsample_chroma(
            chroma, batch["chroma_factor"], self.chroma_indices, tuple(luma.shape[-2:])
        )
        return torch.cat([luma, up.to(luma.dtype)], 1)

    def __call__(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.raw(batch)
        if self.crop is not None:
            if self.train:
                x = random_crop(x, self.crop, self.generator)
            else:
                x = center_crop(x, self.crop)
        if self.flip_p > 0:
            x, _ = random_hflip(x, self.odd_u, self.flip_p, self.generator)
        return self.normalize(x), batch["labels"].to(self.device, non_blocking=True)
