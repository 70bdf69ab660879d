"""Batch mixing and erasing of DCT batches with labels: mixup, block-aligned cutmix, erasing.

All exact on raw or normalized coefficients (they are linear, and cutmix / erasing move whole
8x8 blocks): the result is the block DCT of the same operation on the pixels with the boxes
scaled by 8. Randomness from a CPU ``torch.Generator`` (sequential draws, as torchvision).

* :func:`mixup` — torchvision ``v2.MixUp``: one ``lam ~ Beta(alpha, alpha)`` per batch,
  ``x = lam x + (1 - lam) x.roll(1, 0)``, labels one-hot and mixed the same way.
* :func:`cutmix` — torchvision ``v2.CutMix`` on the block grid: a box of ``~ sqrt(1 - lam)``
  of each side around a uniform centre block (clipped at the edges) is pasted from the
  rolled batch, and ``lam`` is corrected to the pasted area.
* :func:`erase` / :class:`RandomErasing` — torchvision ``RandomErasing`` in whole blocks
  (:func:`~freqdata.augment.sampling.erasing_params`), filled with a per-channel value.

``lam`` draws: torch has no seeded Beta sampler, so a 63-bit seed drawn from the generator
seeds a numpy ``Generator`` whose ``beta`` gives ``lam`` (reproducible from the torch seed).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from freqdata.augment.sampling import erasing_params
from freqdata.errors import UsageError

__all__ = ["RandomErasing", "beta", "cutmix", "erase", "mixup"]


def beta(alpha: float, generator: torch.Generator | None = None) -> float:
    """One draw of ``Beta(alpha, alpha)`` seeded from the CPU ``generator``."""
    if alpha <= 0:
        raise UsageError(f"alpha must be positive, got {alpha}")
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    if labels.ndim == 2:
        return labels.to(dtype)
    return F.one_hot(labels.long(), num_classes).to(dtype)


def mixup(
    x: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup of ``x`` ``(B, C, Hb, Wb)`` and ``labels`` ``(B,)`` int (or ``(B, K)`` soft).

    Returns ``(x, targets (B, num_classes) float, lam)``; ``x`` float.
    """
    xf = x if x.is_floating_point() else x.to(torch.float32)
    lam = beta(alpha, generator)
    y = _one_hot(labels, num_classes, xf.dtype)
    return lam * xf + (1 - lam) * xf.roll(1, 0), lam * y + (1 - lam) * y.roll(1, 0), lam


def cutmix(
    x: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int]]:
    """Block-aligned CutMix: returns ``(x, targets, box)``, ``box = (y1, x1, y2, x2)`` blocks.

    torchvision ``v2.CutMix`` with the image measured in blocks: ``lam ~ Beta(alpha,
    alpha)``, centre ``(r_y, r_x)`` uniform over the grid, half sides ``int(0.5 sqrt(1 -
    lam) * side)``, clipped; ``lam = 1 - area / (Hb Wb)``.
    """
    hb, wb = x.shape[-2:]
    lam = beta(alpha, generator)
    r_x = int(torch.randint(wb, (1,), generator=generator).item())
    r_y = int(torch.randint(hb, (1,), generator=generator).item())
    r = 0.5 * math.sqrt(1.0 - lam)
    half_w, half_h = int(r * wb), int(r * hb)
    x1, y1 = max(r_x - half_w, 0), max(r_y - half_h, 0)
    x2, y2 = min(r_x + half_w, wb), min(r_y + half_h, hb)
    out = x.clone()
    out[..., y1:y2, x1:x2] = x.roll(1, 0)[..., y1:y2, x1:x2]
    lam = 1.0 - (x2 - x1) * (y2 - y1) / (hb * wb)
    y = _one_hot(labels, num_classes, torch.float32 if not x.is_floating_point() else x.dtype)
    return out, lam * y + (1 - lam) * y.roll(1, 0), (y1, x1, y2, x2)


def erase(x: torch.Tensor, boxes: torch.Tensor, value: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Fill block boxes ``(B, 4)`` ``(top, left, h, w)`` of ``(B, C, Hb, Wb)`` with ``value``
    (a scalar or ``(C,)``: e.g. 0 = mid grey on raw coefficients, or the store's mean so the
    region is 0 after normalization, as torchvision's ``value=0`` on normalized images)."""
    c, hb, wb = x.shape[1:]
    boxes = torch.as_tensor(boxes, device=x.device)
    top, left, h, w = boxes.unbind(1)
    rows = torch.arange(hb, device=x.device)[None, :]
    cols = torch.arange(wb, device=x.device)[None, :]
    in_r = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    in_c = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    mask = (in_r[:, :, None] & in_c[:, None, :])[:, None]
    fill = torch.as_tensor(value, dtype=x.dtype, device=x.device).expand(c)
    return torch.where(mask, fill[None, :, None, None], x)


class RandomErasing:
    """torchvision ``RandomErasing(p, scale, ratio, value)`` in whole blocks; call on ``x``
    ``(B, C, Hb, Wb)`` → ``(x, boxes (B, 4) blocks)``. ``value`` scalar or ``(C,)``."""

    def __init__(
        self,
        p: float = 0.5,
        scale: tuple[float, float] = (0.02, 0.33),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: float | torch.Tensor = 0.0,
        seed: int = 0,
    ) -> None:
        self.p, self.scale, self.ratio, self.value = p, scale, ratio, value
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, hb, wb = x.shape
        boxes = erasing_params(hb, wb, b, self.generator, self.p, self.scale, self.ratio)
        return erase(x, boxes, self.value), boxes
