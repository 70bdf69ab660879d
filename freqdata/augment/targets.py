"""Targets that follow a resized crop + horizontal flip: boxes, instance masks, label maps.

A detection, mask or segmentation trainer that augments its DCT inputs with
:func:`freqdata.augment.resized_crop` (per-sample pixel box ``(top, left, h, w)`` resampled
to ``(Ho, Wo)`` pixels = ``8 Hob x 8 Wob``) and :func:`freqdata.augment.flip` must move its
targets the same way:

* :func:`crop_boxes` — ``xyxy`` boxes (continuous pixel coordinates, the image's top-left
  corner at 0): ``x -> (x - left) * Wo / w`` (``y`` alike), clipped to the output, then
  mirrored ``x -> Wo - x`` when flipped; boxes left with no area are flagged;
* :func:`resized_crop_maps` — integer maps (label maps, instance masks) by nearest
  neighbour at pixel centres: output pixel ``i`` takes input pixel ``top + floor((i + 0.5)
  * h / Ho)`` (``F.interpolate(mode="nearest-exact")`` of the box, the geometry of the
  triangle kernel's pixel centres; torchvision v2 masks use ``"nearest"``, ``floor(i * h /
  Ho)``, which is shifted by up to half an input pixel), then flipped. Values are never
  mixed (an ignore label stays an ignore label). Batched: one gather, no per-sample loop.
"""

from __future__ import annotations

import torch

from freqdata.errors import UsageError

__all__ = ["crop_boxes", "resized_crop_maps"]


def _check(crops: torch.Tensor, n: int) -> torch.Tensor:
    crops = torch.as_tensor(crops, dtype=torch.int64)
    if crops.shape != (n, 4):
        raise UsageError(f"crops must be ({n}, 4) (top, left, h, w), got {tuple(crops.shape)}")
    if bool((crops[:, 2:] <= 0).any()):
        raise UsageError("crop sizes must be positive")
    return crops


def crop_boxes(
    boxes: torch.Tensor,
    crops: torch.Tensor,
    size: tuple[int, int],
    flipped: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G, 4)`` ``xyxy`` boxes → ``(boxes (G, 4) float32 in the output, keep (G,) bool)``.

    ``crops``: ``(G, 4)`` int ``(top, left, h, w)``, the crop of each box's image (repeat a
    sample's crop for each of its boxes); ``size``: output ``(Ho, Wo)`` pixels; ``flipped``:
    ``(G,)`` bool, the image's flip. ``keep`` is False for boxes left without area.
    """
    b = torch.as_tensor(boxes).to(torch.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise UsageError(f"boxes must be (G, 4) xyxy, got {tuple(b.shape)}")
    c = _check(crops, len(b)).to(b.device, torch.float64)
    ho, wo = float(size[0]), float(size[1])
    sx, sy = wo / c[:, 3], ho / c[:, 2]
    x = ((b[:, 0::2] - c[:, 1:2]) * sx[:, None]).clamp(0, wo)
    y = ((b[:, 1::2] - c[:, 0:1]) * sy[:, None]).clamp(0, ho)
    if flipped is not None:
        f = torch.as_tensor(flipped, device=b.device).bool()[:, None]
        x = torch.where(f, wo - x.flip(1), x)
    out = torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out.to(torch.float32), keep


def _axis(start: torch.Tensor, length: torch.Tensor, n_out: int) -> torch.Tensor:
    i = torch.arange(n_out, device=start.device, dtype=torch.float64)
    src = torch.floor((i[None] + 0.5) * length[:, None].double() / n_out).to(torch.int64)
    return start[:, None] + torch.minimum(src, length[:, None] - 1)


def resized_crop_maps(
    maps: torch.Tensor,
    crops: torch.Tensor,
    size: tuple[int, int],
    flipped: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(N, H, W)`` maps (any dtype) → ``(N, Ho, Wo)``, nearest at pixel centres.

    ``crops``: ``(N, 4)`` int ``(top, left, h, w)`` inside ``H x W``, one per map (repeat a
    sample's crop for each of its instance masks); ``flipped``: ``(N,)`` bool.
    """
    if maps.ndim != 3:
        raise UsageError(f"maps must be (N, H, W), got {tuple(maps.shape)}")
    n, hh, ww = maps.shape
    c = _check(crops, n).to(maps.device)
    if bool(((c[:, 0] < 0) | (c[:, 1] < 0) | (c[:, 0] + c[:, 2] > hh)
             | (c[:, 1] + c[:, 3] > ww)).any()):  # fmt: skip
        raise UsageError(f"crops do not fit {hh}x{ww} maps")
    rows = _axis(c[:, 0], c[:, 2], int(size[0]))  # (N, Ho)
    cols = _axis(c[:, 1], c[:, 3], int(size[1]))  # (N, Wo)
    if flipped is not None:
        f = torch.as_tensor(flipped, device=maps.device).bool()[:, None]
        cols = torch.where(f, cols.flip(1), cols)
    idx = rows[:, :, None] * ww + cols[:, None, :]  # (N, Ho, Wo)
    return maps.reshape(n, hh * ww).gather(1, idx.reshape(n, -1)).reshape(n, *idx.shape[1:])
