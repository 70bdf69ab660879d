"""Frequency Dynamic Convolution (FDConv; Chen et al., CVPR 2025) in plain PyTorch.

:class:`FDConv` is a drop-in replacement for ``nn.Conv2d`` (``groups=1``, zero padding):
same arguments, same output shape, same ``in_channels`` / ``out_channels`` /
``kernel_size`` / ``stride`` / ``padding`` / ``dilation`` / ``groups`` / ``bias``
attributes, and a read-only ``weight`` (the static kernel). Three parts (docs/fdconv.md):

* **Fourier disjoint weight (FDW).** The kernel ``W`` ``(cout, cin, kh, kw)`` is stored
  by its 2-D spectrum: ``W`` is laid out as the matrix ``M = W.permute(0, 2, 1, 3)
  .reshape(cout*kh, cin*kw)`` (row ``o*kh + u``, column ``i*kw + v``) and the parameter
  ``spectrum`` ``(cout*kh, cin*kw//2 + 1, 2)`` (real, imaginary) is
  ``torch.fft.rfft2(M, norm="ortho")``. Its bins are split into ``kernel_num`` disjoint
  groups by their radius ``sqrt(fy² + fx²)`` (``fy = fftfreq(cout*kh)``,
  ``fx = rfftfreq(cin*kw)``, cycles per sample): the bins are ranked by radius (compared
  exactly; a stable sort, so bins of equal radius keep their row-major order: the lower
  row first, then the lower column) and group ``g`` holds ranks ``[g·N/n, (g+1)·N/n)``, so the
  groups differ in size by at most one (:func:`frequency_groups`). Group ``g``'s kernel
  ``W_g`` is the inverse rfft2 of the spectrum restricted to its bins; ``Σ_g W_g = W``
  exactly (linearity). Each sample mixes them with its kernel attention ``a_g``.
* **Kernel spatial modulation (KSM).** Global (ODConv-style), from the pooled input
  ``x̄ = mean_{H,W} x`` ``(B, cin)``: fc ``cin → A`` (``A = max(⌊cin·reduction⌋, 16)``)
  + BN + StarReLU, then four heads, each ``2·sigmoid(·)`` (neutral value 1): channel
  ``(B, cin)``, filter ``(B, cout)``, spatial ``(B, kh, kw)`` (not for 1x1), kernel
  ``(B, kernel_num)`` (not for ``kernel_num=1``). Local: LayerNorm of ``x̄`` and a 1-D
  convolution along the channel axis (ECA-style, kernel ``round(log2(cin)/2 + 0.5)//2*2+1``)
  with ``cout·kh·kw`` output channels gives a per-element attention
  ``(B, cout, cin, kh, kw)``, ``2·sigmoid(·)``.
  Per sample ``b`` the kernel is ``W_b = α_f[o] · α_c[i] · α_s[u, v] · α_l[o, i, u, v] ·
  Σ_g a_g W_g`` (channel attention applied to the input, filter attention to the output:
  the same product).
* **Frequency band modulation (FBM)** of the input (3x3 kernels), see
  :class:`FrequencyBandModulation`: ``x`` is split by low-pass masks of its rfft2 at
  ``k = 2, 4, 8`` into ``(x - L_2) + (L_2 - L_4) + (L_4 - L_8) + L_8``; the first three
  bands are scaled by learned per-pixel maps ``2·sigmoid(conv3x3(x))`` ``(B, 1, H, W)``.

Initialisation (``init``, :data:`INITS`): the spatial weight is ``nn.Conv2d``'s (or the
converted conv's, :meth:`FDConv.from_conv`); the global MLP's ``fc`` is Kaiming normal
(fan-out, ReLU) and its BatchNorm (1, 0). ``"official"`` (default) is what a fresh layer of
the official code (Linwei-Chen/FDConv) holds: the channel, spatial and kernel heads and the
FBM maps ``N(0, 1e-6)`` with zero bias, the **filter head Kaiming normal (fan-out, ReLU)**
with zero bias (the official re-initialisation tests ``isinstance(self.func_filter,
nn.Conv2d)``, which is never true, so ``filter_fc`` keeps the Kaiming init of its
``_initialize_weights`` loop) and the KSM-local weights the **constant 1e-6**. Such a layer
is not neutral: its filter attention ``2·sigmoid(·)`` spreads over roughly 0.4-1.45 and its
output differs from the plain convolution by 10-20 % (on post-ReLU features).
``"neutral"``: every head (filter included) ``N(0, 1e-6)`` and the local weights
``N(0, 1e-6)``, so a fresh layer computes its plain convolution up to ~1e-6 (exactly with
the heads zeroed: every attention is then 1 and FBM the identity) — converting a trained
model then keeps its function.

:func:`to_fdconv` converts the eligible ``nn.Conv2d`` of a model in place (the paper's
rule, :func:`fdconv_eligible`); :func:`parameter_overhead` counts what it added.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from freqdata.errors import UsageError

__all__ = [
    "INITS",
    "FDConv",
    "FrequencyBandModulation",
    "fdconv_eligible",
    "frequency_groups",
    "parameter_overhead",
    "to_fdconv",
]

HEAD_INIT_STD = 1e-6  # attention heads start (almost) neutral: 2·sigmoid(≈0) ≈ 1
LOCAL_INIT = 1e-6  # the official KSM-local weights: this constant
INITS = ("official", "neutral")
"""Attention initialisations of :class:`FDConv` (module docstring)."""


def frequency_groups(rows: int, cols: int, kernel_num: int) -> torch.Tensor:
    """Group id of every bin of ``rfft2`` of a ``(rows, cols)`` matrix: ``(rows, cols//2+1)``
    int64 in ``[0, kernel_num)``.

    Bins are ranked by radius ``sqrt(fy² + fx²)`` (``fy = fftfreq(rows)``,
    ``fx = rfftfreq(cols)``, cycles per sample; compared exactly, as the integers
    ``(fy·rows)²·cols² + (fx·cols)²·rows²``; ties in row-major order); group ``g`` holds the
    ranks ``r`` with ``⌊r · kernel_num / N⌋ = g`` (``N`` bins): low radii first, sizes
    differing by at most one.
    """
    n_bins = rows * (cols // 2 + 1)
    if not 1 <= kernel_num <= n_bins:
        raise UsageError(f"kernel_num must be in [1, {n_bins}] for a {rows}x{cols} kernel matrix, "
                         f"got {kernel_num}")  # fmt: skip
    fy = torch.arange(rows)
    fy = torch.where(fy < (rows + 1) // 2, fy, fy - rows)  # fftfreq(rows) · rows
    fx = torch.arange(cols // 2 + 1)  # rfftfreq(cols) · cols
    key = (fy[:, None] ** 2 * cols**2 + fx[None, :] ** 2 * rows**2).flatten()
    order = torch.argsort(key, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n_bins)
    return (rank * kernel_num // n_bins).reshape(rows, cols // 2 + 1)


def _attention(z: torch.Tensor) -> torch.Tensor:
    """The paper's gate ``2·sigmoid(z)``: in (0, 2), 1 at z = 0."""
    return 2.0 * torch.sigmoid(z)


def _small_init(layer: nn.Module) -> None:
    nn.init.normal_(layer.weight, std=HEAD_INIT_STD)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


def _kaiming_init(layer: nn.Linear) -> None:
    """detectron/ODConv-style ``kaiming_normal_(fan_out, relu)``, zero bias."""
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class _StarReLU(nn.Module):
    """``s · relu(x)² + b`` with learnable scalars ``s`` (init 1) and ``b`` (init 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.shift = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.relu(x) ** 2 + self.shift


class _KSMGlobal(nn.Module):
    """Global kernel attentions from the pooled input ``(B, cin)`` (ODConv-style heads)."""

    def __init__(self, cin: int, cout: int, kernel_size: tuple[int, int], kernel_num: int,
                 reduction: float, min_hidden: int, init: str = "official") -> None:  # fmt: skip
        super().__init__()
        hidden = max(int(cin * reduction), min_hidden)
        self.fc = nn.Linear(cin, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.act = _StarReLU()
        sizes = {"channel": cin, "filter": cout}
        if kernel_size[0] * kernel_size[1] > 1:
            sizes["spatial"] = kernel_size[0] * kernel_size[1]
        if kernel_num > 1:
            sizes["kernel"] = kernel_num
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, n) for k, n in sizes.items()})
        nn.init.kaiming_normal_(self.fc.weight, mode="fan_out", nonlinearity="relu")
        for name, head in self.heads.items():
            (_kaiming_init if init == "official" and name == "filter" else _small_init)(head)

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.act(self.bn(self.fc(pooled)))
        return {k: _attention(head(h)) for k, head in self.heads.items()}


class _KSMLocal(nn.Module):
    """Per-element attention logits ``(B, cout, cin, kh, kw)`` from the pooled input
    ``(B, cin)`` (the attention is ``2·sigmoid`` of them): LayerNorm, then a 1-D convolution
    along the channel axis (zero padding, ``K`` taps, ``cout·kh·kw`` output channels, no
    bias; ``weight`` ``(cout·kh·kw, K)`` = ``nn.Conv1d``'s weight without its input axis):
    ``logit[b, o, i, u, v] = Σ_t weight[(o·kh + u)·kw + v, t] · x̂[b, i + t - K//2]``,
    computed as one matrix product over the unfolded channel windows."""

    def __init__(
        self, cin: int, cout: int, kernel_size: tuple[int, int], init: str = "official"
    ) -> None:
        super().__init__()
        self.taps = round(math.log2(cin) / 2 + 0.5) // 2 * 2 + 1 if cin > 1 else 1
        self.cout, self.kernel_size = cout, kernel_size
        self.norm = nn.LayerNorm(cin)
        self.weight = nn.Parameter(torch.empty(cout * kernel_size[0] * kernel_size[1], self.taps))
        if init == "official":
            nn.init.constant_(self.weight, LOCAL_INIT)
        else:
            nn.init.normal_(self.weight, std=HEAD_INIT_STD)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        b, cin = pooled.shape
        pad = self.taps // 2
        windows = F.pad(self.norm(pooled), (pad, pad)).unfold(-1, self.taps, 1)  # (B, cin, K)
        z = windows.reshape(b * cin, self.taps) @ self.weight.t()  # (B·cin, cout·kh·kw)
        return z.reshape(b, cin, self.cout, *self.kernel_size).transpose(1, 2)


class FrequencyBandModulation(nn.Module):
    """Split ``x`` ``(B, C, H, W)`` into frequency bands and rescale each band per pixel.

    ``L_k`` = ``irfft2(rfft2(x) · mask_k)`` with ``mask_k = max(|fy|, |fx|) < 0.5/k + 1e-8``
    evaluated in float32 as the official code does (``fy = fftfreq(H)``, ``fx =
    rfftfreq(W)``, cycles per sample, float32; the threshold rounded to float32): for
    ``k = 2`` the 1e-8 is lost (``0.25 + 1e-8`` rounds to 0.25), so that band is strictly
    ``max < 0.25``, while ``k = 4, 8`` keep their boundary (``max ≤ 0.125``, ``≤ 0.0625``).
    Computed for each input size (the official code's newest release resizes masks
    precomputed at a maximum size instead, docs/fdconv.md);
    with ``bands = (k_1 < k_2 < …)`` the bands are ``x - L_{k_1}``, ``L_{k_1} - L_{k_2}``,
    …, and the unscaled residual ``L_{k_last}``. Output ``Σ_j m_j ⊙ band_j + L_{k_last}``,
    ``m_j = 2·sigmoid(conv3x3(x))_j`` ``(B, 1, H, W)`` shared by all channels. FFTs run in float32
    (float64 for float64 inputs); the output has the input's dtype and shape.
    """

    def __init__(self, channels: int, bands: Sequence[int] = (2, 4, 8)) -> None:
        super().__init__()
        bands = tuple(int(k) for k in bands)
        if not bands or bands[0] < 1 or any(a >= b for a, b in pairwise(bands)):
            raise UsageError(f"bands must be increasing integers >= 1, got {bands}")
        self.bands = bands
        self.maps = nn.Conv2d(channels, len(bands), 3, padding=1)
        _small_init(self.maps)

    def masks(self, h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
        """Low-pass masks ``(len(bands), h, w//2 + 1)`` bool on the rfft2 grid (class
        docstring: the official float32 test)."""
        fy = torch.fft.fftfreq(h, dtype=torch.float32, device=device).abs()
        fx = torch.fft.rfftfreq(w, dtype=torch.float32, device=device)
        f = torch.maximum(fy[:, None], fx[None, :])
        cut = [torch.tensor(0.5 / k + 1e-8, dtype=torch.float32, device=device) for k in self.bands]
        return torch.stack([f < c for c in cut])

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ``len(bands) + 1`` bands of ``x`` (high to low); they sum to ``x``."""
        h, w = x.shape[-2:]
        spec = torch.fft.rfft2(x, norm="ortho")
        masks = self.masks(h, w, x.device).to(x.dtype)
        lows = torch.fft.irfft2(spec[None] * masks[:, None, None], s=(h, w), norm="ortho")
        levels = [x, *lows.unbind(0)]
        return [a - b for a, b in pairwise(levels)] + [levels[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
        *bands, low = self.split(xf)
        maps = _attention(self.maps(x)).to(xf.dtype)
        out = low
        for j, band in enumerate(bands):
            out = out + maps[:, j : j + 1] * band
        return out.to(x.dtype)


class FDConv(nn.Module):
    """Frequency dynamic convolution, a drop-in ``nn.Conv2d`` (module docstring).

    Arguments as ``nn.Conv2d`` (``groups`` must be 1, ``padding_mode`` ``"zeros"``), plus:
    ``kernel_num`` (number of disjoint frequency groups, the paper's n; its detection
    configs use 64), ``reduction`` / ``min_hidden`` (width of the global attention MLP),
    ``ksm_local`` (the per-element attention), ``fbm`` (frequency band modulation of the
    input; ``None``: for 3x3 kernels, as in the paper), ``fbm_bands`` and ``init``
    (``"official"`` or ``"neutral"``, module docstring).

    ``forward``: ``(B, cin, H, W)`` → ``(B, cout, H', W')`` exactly as ``nn.Conv2d``.
    In training mode the global attention's BatchNorm needs ``B > 1``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        kernel_num: int = 4,
        reduction: float = 0.0625,
        min_hidden: int = 16,
        ksm_local: bool = True,
        fbm: bool | None = None,
        fbm_bands: Sequence[int] = (2, 4, 8),
        init: str = "official",
    ) -> None:
        super().__init__()
        if groups != 1:
            raise UsageError(f"FDConv supports groups=1 only, got groups={groups}")
        if padding_mode != "zeros":
            raise UsageError(f"FDConv supports padding_mode='zeros' only, got {padding_mode!r}")
        if init not in INITS:
            raise UsageError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        # nn.Conv2d validates and normalises the arguments and gives the default init
        ref = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                        groups, bias, padding_mode, device=device, dtype=dtype)  # fmt: skip
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size: tuple[int, int] = ref.kernel_size  # type: ignore[assignment]
        self.stride, self.padding, self.dilation = ref.stride, ref.padding, ref.dilation
        self.groups, self.padding_mode = 1, "zeros"
        self.kernel_num = kernel_num
        kh, kw = self.kernel_size
        rows, cols = out_channels * kh, in_channels * kw
        self.register_buffer("freq_group", frequency_groups(rows, cols, kernel_num).to(
            device), persistent=False)  # fmt: skip
        self.spectrum = nn.Parameter(
            torch.empty(rows, cols // 2 + 1, 2, device=device, dtype=dtype)
        )
        self.bias = nn.Parameter(torch.empty(out_channels, device=device, dtype=dtype)) if bias \
            else None  # fmt: skip
        self.init = init
        self.ksm_global = _KSMGlobal(in_channels, out_channels, self.kernel_size, kernel_num,
                                     reduction, min_hidden, init)  # fmt: skip
        self.ksm_local = _KSMLocal(in_channels, out_channels, self.kernel_size, init) \
            if ksm_local else None  # fmt: skip
        use_fbm = self.kernel_size == (3, 3) if fbm is None else fbm
        self.fbm = FrequencyBandModulation(in_channels, fbm_bands) if use_fbm else None
        self.to(device=ref.weight.device, dtype=ref.weight.dtype)
        self.load_conv_weight(ref.weight.detach(), None if ref.bias is None else ref.bias.detach())

    # ------------------------------------------------------------------ weights
    @classmethod
    def from_conv(cls, conv: nn.Conv2d, **kwargs: Any) -> FDConv:
        """An FDConv with ``conv``'s arguments, device, dtype, weight and bias (converted into
        the Fourier parametrisation); ``kwargs`` go to the constructor (``kernel_num``,
        ``init`` ...). With neutral attentions (``init="neutral"``, up to ~1e-6) it computes
        ``conv(x)``."""
        if not isinstance(conv, nn.Conv2d):
            raise UsageError(f"from_conv needs an nn.Conv2d, got {type(conv).__name__}")
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
                **kwargs)  # fmt: skip
        m.load_conv_weight(conv.weight.detach(), None if conv.bias is None else conv.bias.detach())
        return m.train(conv.training)

    @torch.no_grad()
    def load_conv_weight(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Set the spectrum from a spatial kernel ``(cout, cin, kh, kw)`` (and the bias)."""
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        if tuple(weight.shape) != shape:
            raise UsageError(f"weight must have shape {shape}, got {tuple(weight.shape)}")
        cout, cin, kh, kw = shape
        mat = weight.permute(0, 2, 1, 3).reshape(cout * kh, cin * kw)
        spec = torch.fft.rfft2(mat.to(self.spectrum.dtype), norm="ortho")
        self.spectrum.copy_(torch.view_as_real(spec))
        if self.bias is not None:
            self.bias.copy_(bias if bias is not None else torch.zeros_like(self.bias))

    def _to_kernels(self, mats: torch.Tensor) -> torch.Tensor:
        """``(..., cout·kh, cin·kw)`` matrices → ``(..., cout, cin, kh, kw)`` kernels."""
        cout, cin, (kh, kw) = self.out_channels, self.in_channels, self.kernel_size
        k = mats.reshape(*mats.shape[:-2], cout, kh, cin, kw)
        return k.transpose(-3, -2)

    def _irfft(self, spec: torch.Tensor) -> torch.Tensor:
        s = (self.out_channels * self.kernel_size[0], self.in_channels * self.kernel_size[1])
        return torch.fft.irfft2(spec, s=s, norm="ortho")

    @property
    def weight(self) -> torch.Tensor:
        """The static kernel ``(cout, cin, kh, kw)`` = the iFFT of the whole spectrum (what
        the layer convolves with when every attention is 1)."""
        return self._to_kernels(self._irfft(torch.view_as_complex(self.spectrum)))

    def group_weights(self) -> torch.Tensor:
        """The disjoint-frequency kernels ``W_g`` ``(kernel_num, cout, cin, kh, kw)``; their
        sum is :attr:`weight`."""
        onehot = F.one_hot(self.freq_group, self.kernel_num).permute(2, 0, 1)
        spec = torch.view_as_complex(self.spectrum)[None] * onehot.to(self.spectrum.dtype)
        return self._to_kernels(self._irfft(spec))

    def _mixed_weights(self, kernel_att: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``scale[b, u, v] · Σ_g a[b, g] W_g[o, i, u, v]`` ``(B, cout, cin, kh, kw)`` for
        kernel attentions ``a`` ``(B, n)`` and ``scale`` ``(B, kh, kw)``.

        Two equal ways (linearity of the iFFT), the cheaper one by ``B`` vs ``n``: one iFFT
        per sample of the spectrum scaled group-wise, or one per group then a weighted sum.
        """
        a = kernel_att.to(self.spectrum.dtype)
        scale = scale.to(self.spectrum.dtype)
        if a.shape[0] < self.kernel_num:
            spec = torch.view_as_complex(self.spectrum)[None] * a[:, self.freq_group]
            return self._to_kernels(self._irfft(spec)) * scale[:, None, None]
        return torch.einsum("bn,buv,noiuv->boiuv", a, scale, self.group_weights())

    # ------------------------------------------------------------------ forward
    def _attend(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Global attentions (``spatial`` ``(B, kh, kw)``, ``kernel`` ``(B, n)`` always
        present) and the local logits (None without ``ksm_local``)."""
        b = x.shape[0]
        pooled = x.mean(dim=(2, 3))
        att = self.ksm_global(pooled)
        one = pooled.new_ones(())
        att["spatial"] = att["spatial"].reshape(b, *self.kernel_size) if "spatial" in att \
            else one.expand(b, *self.kernel_size)  # fmt: skip
        att.setdefault("kernel", one.expand(b, self.kernel_num))
        return att, None if self.ksm_local is None else self.ksm_local(pooled)

    def attentions(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The per-sample attentions for input ``x`` ``(B, cin, H, W)``: ``channel``
        ``(B, cin)``, ``filter`` ``(B, cout)``, ``spatial`` ``(B, kh, kw)``, ``kernel``
        ``(B, kernel_num)``, ``local`` ``(B, cout, cin, kh, kw)`` (ones where a part is
        absent: 1x1 kernels, ``kernel_num=1``, ``ksm_local=False``)."""
        att, local = self._attend(x)
        att["local"] = att["spatial"].new_ones(()).expand(
            x.shape[0], self.out_channels, self.in_channels, *self.kernel_size
        ) if local is None else _attention(local)  # fmt: skip
        return att

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise UsageError(f"FDConv expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        b = x.shape[0]
        att, local = self._attend(x)
        if local is None:
            w = self._mixed_weights(att["kernel"], att["spatial"])
        else:  # 2·sigmoid(local): the factor 2 rides on the (small) spatial attention
            w = self._mixed_weights(att["kernel"], 2.0 * att["spatial"]) * torch.sigmoid(local)
        if self.fbm is not None:
            x = self.fbm(x)
        x = x * att["channel"][:, :, None, None].to(x.dtype)
        y = F.conv2d(x.reshape(1, b * self.in_channels, *x.shape[2:]),
                     w.reshape(b * self.out_channels, self.in_channels, *self.kernel_size)
                     .to(x.dtype), None, self.stride, self.padding, self.dilation,
                     groups=b)  # fmt: skip
        y = y.reshape(b, self.out_channels, *y.shape[2:]) * att["filter"][:, :, None, None]
        if self.bias is not None:
            y = y + self.bias[:, None, None]
        return y

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")  # fmt: skip
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        return s + f", kernel_num={self.kernel_num}, fbm={self.fbm is not None}, init={self.init}"


# ---------------------------------------------------------------------- model conversion
def fdconv_eligible(
    conv: nn.Module, *, min_channels: int = 16, kernel_sizes: Sequence[int] = (1, 3)
) -> bool:
    """The paper's rule for which convolutions become FDConv: a plain ``nn.Conv2d`` (exact
    type: subclasses may change the forward) with ``groups=1``, zero padding, a square
    kernel of a size in ``kernel_sizes`` and ``min(in_channels, out_channels) >
    min_channels``. Everything else stays a plain convolution."""
    return (
        type(conv) is nn.Conv2d
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.kernel_size[0] == conv.kernel_size[1]
        and conv.kernel_size[0] in tuple(kernel_sizes)
        and min(conv.in_channels, conv.out_channels) > min_channels
    )


def to_fdconv(
    model: nn.Module,
    *,
    min_channels: int = 16,
    kernel_sizes: Sequence[int] = (1, 3),
    exclude: Sequence[str] = ("downsample",),
    **kwargs: Any,
) -> nn.Module:
    """Replace the eligible ``nn.Conv2d`` of ``model`` by :meth:`FDConv.from_conv` (weights
    kept), in place; returns ``model``.

    Eligible: :func:`fdconv_eligible` (``min_channels``, ``kernel_sizes``), and no component
    of the module's qualified name (``layer1.0.downsample.0``) is in ``exclude`` — by
    default the ResNet projection shortcuts, which the paper's ResNets keep plain. The
    ResNet stem (7x7), depthwise and small convolutions stay ``nn.Conv2d``. ``kwargs`` go to
    :class:`FDConv` (``kernel_num``, ``fbm`` ...). A bare eligible ``nn.Conv2d`` passed as
    ``model`` is returned converted (it cannot be replaced in place).
    """
    excluded = set(exclude)

    def wanted(name: str, m: nn.Module) -> bool:
        return fdconv_eligible(m, min_channels=min_channels, kernel_sizes=kernel_sizes) and \
            not excluded.intersection(name.split("."))  # fmt: skip

    if wanted("", model):
        return FDConv.from_conv(model, **kwargs)  # type: ignore[arg-type]
    targets = [(name, m) for name, m in model.named_modules() if name and wanted(name, m)]
    for name, conv in targets:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, FDConv.from_conv(conv, **kwargs))
    return model


def parameter_overhead(model: nn.Module) -> dict[str, Any]:
    """What the FDConv layers of ``model`` cost in parameters, against the same model with
    plain convolutions (``cout·cin·kh·kw`` weights + bias per layer).

    Returns ``params_conv`` (the plain model), ``params_fdconv`` (this model), ``added``,
    ``ratio`` (fdconv / conv), ``fdconv_layers``, ``plain_convs`` (``nn.Conv2d`` left), and
    ``added_by_part``: ``fdw`` (spectrum minus the spatial weight it replaces),
    ``ksm_global``, ``ksm_local``, ``fbm``.
    """
    total = sum(p.numel() for p in model.parameters())
    parts = {"fdw": 0, "ksm_global": 0, "ksm_local": 0, "fbm": 0}
    fd = [m for m in model.modules() if isinstance(m, FDConv)]
    inside = {id(s) for m in fd for s in m.modules()}
    plain = sum(isinstance(m, nn.Conv2d) and id(m) not in inside for m in model.modules())
    for m in fd:
        cout, cin, (kh, kw) = m.out_channels, m.in_channels, m.kernel_size
        parts["fdw"] += m.spectrum.numel() - cout * cin * kh * kw
        for part in ("ksm_global", "ksm_local", "fbm"):
            sub = getattr(m, part)
            parts[part] += 0 if sub is None else sum(p.numel() for p in sub.parameters())
    added = sum(parts.values())
    before = total - added
    return {"params_conv": before, "params_fdconv": total, "added": added,
            "ratio": total / max(before, 1), "fdconv_layers": len(fd), "plain_convs": plain,
            "added_by_part": parts}  # fmt: skip
