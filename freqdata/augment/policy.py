"""RandAugment and TrivialAugmentWide on DCT batches, with the ops that have an exact DCT form.

The policies draw exactly as torchvision's ``RandAugment(num_ops, magnitude,
num_magnitude_bins)`` and ``TrivialAugmentWide(num_magnitude_bins)`` do (same generator
calls in the same order, per sample, from a CPU ``torch.Generator``), over this op list:

* Identity;
* Brightness, Color (saturation), Contrast: :func:`~freqdata.augment.colour.adjust_colour`
  with factor ``1 + m``, ``m`` signed, bins ``linspace(0, 0.9)`` (Trivial: ``0.99``);
* Sharpness: :func:`~freqdata.augment.colour.sharpen` (per block), same magnitudes;
* TranslateX/Y: :func:`~freqdata.augment.geometric.translate_blocks`, bins ``linspace(0,
  150/331 * side)`` pixels (Trivial: ``linspace(0, 32)``), signed, rounded to whole blocks.

Optional extra ops (``ops=``): ``HFlip``, ``VFlip``, ``Rotate90`` (a random quarter turn either
way; square grids), exact flips / rot90 of :mod:`freqdata.augment.geometric`.

Left out, with the reason:

* ShearX/Y, Rotate (arbitrary angles): not separable; a DCT form needs a full 2-D
  resampling per block neighbourhood (not a pair of matmuls) — rot90 is offered instead;
* Posterize, Solarize, AutoContrast, Equalize: nonlinear functions of the pixel *values*
  (bit truncation, a threshold, min/max, the histogram); no map of coefficients computes
  them without the inverse DCT (a DCT-domain version would be an approximation with no
  definition of its own).

The colour ops are not clipped and translation fills uncovered blocks with a flat colour
(``fill``: luma pixel value, 0 = black = torchvision's default) — see
:mod:`freqdata.augment.colour` for the differences from torchvision's RGB definitions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from freqdata.augment.colour import adjust_colour, sharpen
from freqdata.augment.geometric import flip, rot90, translate_blocks
from freqdata.augment.layout import as_channel_info
from freqdata.dct import BLOCK
from freqdata.errors import UsageError
from freqdata.transforms import ChannelInfo

__all__ = ["DEFAULT_OPS", "EXTRA_OPS", "RandAugment", "TrivialAugmentWide", "apply_ops"]

DEFAULT_OPS = (
    "Identity",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "TranslateX",
    "TranslateY",
)
EXTRA_OPS = ("HFlip", "VFlip", "Rotate90")
_SIGNED = {"Brightness", "Color", "Contrast", "Sharpness", "TranslateX", "TranslateY", "Rotate90"}
_FACTOR = ("Brightness", "Color", "Contrast", "Sharpness")


def _magnitudes(op: str, bins: int, hw: tuple[int, int], wide: bool) -> torch.Tensor | None:
    """torchvision's magnitude bins of ``op`` (None: no magnitude)."""
    if op in _FACTOR:
        return torch.linspace(0.0, 0.99 if wide else 0.9, bins)
    if op in ("TranslateX", "TranslateY"):
        side = hw[1] if op == "TranslateX" else hw[0]
        return torch.linspace(0.0, 32.0 if wide else 150.0 / 331.0 * side, bins)
    return None


def apply_ops(
    x: torch.Tensor,
    channels: ChannelInfo | Sequence[str],
    ops: Sequence[str],
    magnitudes: torch.Tensor,
    fill: float = 0.0,
) -> torch.Tensor:
    """Apply one op per sample: ``ops`` (B names), ``magnitudes`` ``(B,)`` float (signed).

    ``x`` ``(B, C, Hb, Wb)`` raw coefficients → float. Every sample gets its own op; all are
    applied as batched per-sample maps (the others' parameters neutral).
    """
    info = as_channel_info(channels)
    xf = x if x.is_floating_point() else x.to(torch.float32)
    mag = torch.as_tensor(magnitudes, dtype=xf.dtype).to(xf.device)
    names = list(ops)
    unknown = set(names) - set(DEFAULT_OPS) - set(EXTRA_OPS)
    if unknown:
        raise UsageError(f"unknown ops {sorted(unknown)}: choose from {DEFAULT_OPS + EXTRA_OPS}")

    def sel(name: str) -> torch.Tensor:
        return torch.tensor([n == name for n in names], device=xf.device)

    def factor(name: str) -> torch.Tensor:
        return torch.where(sel(name), 1.0 + mag, torch.ones_like(mag))

    if any(n in ("Brightness", "Color", "Contrast") for n in names):
        xf = adjust_colour(
            xf, info, factor("Brightness"), factor("Contrast"), factor("Color"), None
        )
    if "Sharpness" in names:
        xf = sharpen(xf, info, factor("Sharpness"))
    if "TranslateX" in names or "TranslateY" in names:
        blocks = torch.round(mag / BLOCK).to(torch.int64)
        zero = torch.zeros_like(blocks)
        dx = torch.where(sel("TranslateX"), blocks, zero)
        dy = torch.where(sel("TranslateY"), blocks, zero)
        xf = translate_blocks(xf, info, dy, dx, fill)
    if "HFlip" in names:
        xf = flip(xf, info, "h", sel("HFlip"))
    if "VFlip" in names:
        xf = flip(xf, info, "v", sel("VFlip"))
    if "Rotate90" in names:
        turns = torch.where(sel("Rotate90"), torch.sign(mag).to(torch.int64), 0)
        xf = rot90(xf, info, turns)
    return xf


class _Policy:
    wide = False

    def __init__(
        self,
        channels: ChannelInfo | Sequence[str],
        num_magnitude_bins: int = 31,
        ops: Sequence[str] = DEFAULT_OPS,
        fill: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.channels = as_channel_info(channels)
        self.ops = tuple(ops)
        bad = set(self.ops) - set(DEFAULT_OPS) - set(EXTRA_OPS)
        if bad or not self.ops:
            raise UsageError(f"ops must be a non-empty subset of {DEFAULT_OPS + EXTRA_OPS}")
        self.bins = int(num_magnitude_bins)
        self.fill = float(fill)
        self.generator = torch.Generator().manual_seed(seed)

    def _draw_one(self, hw: tuple[int, int]) -> tuple[str, float]:
        g = self.generator
        op = self.ops[int(torch.randint(len(self.ops), (1,), generator=g).item())]
        mags = _magnitudes(op, self.bins, hw, self.wide)
        if mags is None:
            m = 1.0 if op == "Rotate90" else 0.0
        elif self.wide:
            m = float(mags[torch.randint(len(mags), (1,), dtype=torch.long, generator=g)].item())
        else:
            m = float(mags[self.magnitude].item())
        if op in _SIGNED and torch.randint(2, (1,), generator=g):
            m = -m
        return op, m

    def draw(self, n: int, hw: tuple[int, int]) -> list[list[tuple[str, float]]]:
        """Per sample, the ``(op, signed magnitude)`` list, for an image of ``hw`` pixels."""
        return [[self._draw_one(hw) for _ in range(self.num_ops)] for _ in range(n)]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, list[list[tuple[str, float]]]]:
        """``x`` ``(B, C, Hb, Wb)`` raw coefficients → ``(augmented float, drawn ops)``."""
        hb, wb = x.shape[-2:]
        drawn = self.draw(x.shape[0], (hb * BLOCK, wb * BLOCK))
        for slot in range(self.num_ops):
            names = [d[slot][0] for d in drawn]
            mags = torch.tensor([d[slot][1] for d in drawn], dtype=torch.float64)
            x = apply_ops(x, self.channels, names, mags, self.fill)
        return x, drawn


class RandAugment(_Policy):
    """torchvision ``RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=31)`` over the
    DCT-exact op list (module docstring); call → ``(x, drawn ops per sample)``."""

    def __init__(
        self,
        channels: ChannelInfo | Sequence[str],
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        ops: Sequence[str] = DEFAULT_OPS,
        fill: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(channels, num_magnitude_bins, ops, fill, seed)
        if not 0 <= magnitude < self.bins:
            raise UsageError(f"magnitude must be in 0..{self.bins - 1}, got {magnitude}")
        self.num_ops, self.magnitude = int(num_ops), int(magnitude)


class TrivialAugmentWide(_Policy):
    """torchvision ``TrivialAugmentWide(num_magnitude_bins=31)``: one op per sample with a
    uniformly drawn magnitude bin, over the DCT-exact op list; call → ``(x, drawn ops)``."""

    wide = True
    num_ops = 1
