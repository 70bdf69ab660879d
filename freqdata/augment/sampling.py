"""Random box parameters, drawn exactly like torchvision, from a seeded ``torch.Generator``.

* :func:`resized_crop_params` — ``RandomResizedCrop.get_params`` (torchvision 0.15+,
  identical in ``transforms`` and ``transforms.v2``): up to 10 tries of an area fraction
  uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``, ``w = round(sqrt(area *
  aspect))``, ``h = round(sqrt(area / aspect))``, a uniform top-left; if no try fits, the
  centred crop of the whole image clamped to the ratio range. Same draws, same float32
  arithmetic, same order: with one generator seeded the same, sample ``i`` of a call gets the
  box torchvision's ``get_params`` would give on its ``i``-th call.
* :func:`erasing_params` — ``RandomErasing.get_params`` on a grid of blocks (the erased
  rectangle is measured in whole 8x8 blocks).

Draws are sequential per sample on the CPU (a few scalars each: cheap next to the transform
they parameterize); the generator must be a CPU generator. Results are int64 CPU tensors.
"""

from __future__ import annotations

import math

import torch

from freqdata.errors import UsageError
from freqdata.pixels import rrc_fallback_box

__all__ = ["draw_boxes", "erasing_params", "resized_crop_params"]

RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)


def _sizes(size: int | torch.Tensor, n: int, what: str) -> list[int]:
    if isinstance(size, torch.Tensor):
        vals = size.flatten().tolist()
        if len(vals) != n:
            raise UsageError(f"{what}: {len(vals)} sizes for {n} samples")
    else:
        vals = [int(size)] * n
    if any(v <= 0 for v in vals):
        raise UsageError(f"{what}: sizes must be positive")
    return [int(v) for v in vals]


def _check_generator(generator: torch.Generator | None) -> None:
    if generator is not None and generator.device.type != "cpu":
        raise UsageError("box parameters are drawn on the CPU: pass a CPU torch.Generator")


def resized_crop_params(
    height: int | torch.Tensor,
    width: int | torch.Tensor,
    n: int,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> torch.Tensor:
    """``(n, 4)`` int64 boxes ``(top, left, h, w)`` in pixels, torchvision's algorithm.

    ``height``/``width``: the image size in pixels, one for all samples or ``(n,)`` tensors.
    ``generator``: a CPU ``torch.Generator`` (None = the global one, as torchvision).
    """
    _check_generator(generator)
    if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
        raise UsageError(f"scale {scale} and ratio {ratio} must be positive, increasing ranges")
    hs, ws = _sizes(height, n, "height"), _sizes(width, n, "width")
    log_ratio = torch.log(torch.tensor(ratio))
    out = torch.empty((n, 4), dtype=torch.int64)
    for s in range(n):
        out[s] = torch.tensor(_one_box(hs[s], ws[s], scale, ratio, log_ratio, generator))
    return out


def draw_boxes(
    height: int | torch.Tensor,
    width: int | torch.Tensor,
    n: int,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
    step: int = 1,
) -> torch.Tensor:
    """:func:`resized_crop_params` on a ``step``-pixel lattice: ``(n, 4)`` int64 boxes drawn
    on the image shrunk to ``size // step`` pixels, then multiplied by ``step`` (the box stays
    inside the image). ``step=1`` is :func:`resized_crop_params` itself. Two images of the
    same content at resolutions ``r`` and ``r * step`` get the same boxes (scaled by
    ``step``) from generators seeded alike."""
    if step == 1:
        return resized_crop_params(height, width, n, generator, scale, ratio)
    return resized_crop_params(height // step, width // step, n, generator, scale, ratio) * step


def _one_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    log_ratio: torch.Tensor,
    g: torch.Generator | None,
) -> tuple[int, int, int, int]:
    area = height * width
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=g).item()
        aspect = torch.exp(
            torch.empty(1).uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=g)
        ).item()
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=g).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=g).item())
            return top, left, h, w
    return rrc_fallback_box(width, height, ratio)


def erasing_params(
    hb: int,
    wb: int,
    n: int,
    generator: torch.Generator | None = None,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """``(n, 4)`` int64 ``(top, left, h, w)`` in *blocks* of an ``hb x wb`` grid.

    torchvision's ``RandomErasing``: erase with probability ``p``; then up to 10 tries of an
    area fraction uniform in ``scale`` and a log-uniform aspect in ``ratio``, ``h =
    round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))`` (in blocks), kept when
    it fits (``h < hb`` and ``w < wb``), top-left uniform. Rows with ``h`` or ``w`` 0 erase
    nothing (not drawn, no fit, or a size that rounds to 0 blocks).
    """
    _check_generator(generator)
    log_ratio = torch.log(torch.tensor(ratio))
    out = torch.zeros((n, 4), dtype=torch.int64)
    area = hb * wb
    for s in range(n):
        if torch.rand(1, generator=generator).item() >= p:
            continue
        for _ in range(10):
            target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
            aspect = torch.exp(
                torch.empty(1).uniform_(
                    float(log_ratio[0]), float(log_ratio[1]), generator=generator
                )
            ).item()
            h = round(math.sqrt(target * aspect))
            w = round(math.sqrt(target / aspect))
            if h < hb and w < wb:
                top = int(torch.randint(0, hb - h + 1, (1,), generator=generator).item())
                left = int(torch.randint(0, wb - w + 1, (1,), generator=generator).item())
                out[s] = torch.tensor([top, left, h, w])
                break
    return out
