"""What the channel gate selected: per-channel rates, the paper's heat map, a static preset.

* :class:`SelectionRates` accumulates the gate's 0/1 decisions ``(B, C)`` over a data set
  (evaluation mode: deterministic decisions) into per-channel selection rates ``(C,)``.
* :func:`rate_grids` puts the rates on the paper's grid: ``(3, 8, 8)`` for Y, Cb, Cr, cell
  ``(v, u)`` = rate of channel ``k = 8v + u`` (NaN where the store has no such channel).
* :func:`draw_heatmap` draws the three 8x8 panels (Pillow only) as a PNG.
* :func:`static_selection` keeps the channels with rate >= threshold:
  ``{"y": [...], "cb": [...], "cr": [...]}`` (natural indices, ascending), written by
  :func:`save_preset` as JSON in the shape of :class:`freqdata.presets.Preset`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from freqdata.errors import UsageError
from freqdata.transforms import channel_info

__all__ = [
    "COMPONENTS",
    "SelectionRates",
    "draw_heatmap",
    "rate_grids",
    "save_preset",
    "static_selection",
]

COMPONENTS = ("Y", "Cb", "Cr")


class SelectionRates:
    """Running per-channel selection counts over images."""

    def __init__(self, channels: int) -> None:
        self.count = np.zeros(channels, dtype=np.float64)
        self.images = 0

    def update(self, gates: torch.Tensor) -> None:
        """Add a batch of gate decisions ``(B, C)`` (0/1, any float dtype, any device)."""
        g = gates.detach().float().cpu().numpy()
        self.count += g.sum(0)
        self.images += g.shape[0]

    @property
    def rates(self) -> np.ndarray:
        """``(C,)`` float64: fraction of images for which each channel was selected."""
        return self.count / max(self.images, 1)


def rate_grids(rates: Sequence[float] | np.ndarray, channel_names: Sequence[str]) -> np.ndarray:
    """``(3, 8, 8)`` float64 grids (Y, Cb, Cr) of ``rates`` by natural index; NaN = absent."""
    info = channel_info(channel_names)
    rates = np.asarray(rates, dtype=np.float64)
    if rates.shape != (len(info.k),):
        raise UsageError(f"{rates.shape[0]} rates for {len(info.k)} channels")
    grid = np.full((3, 8, 8), np.nan)
    grid[info.component, info.v, info.u] = rates
    return grid


def _colour(t: float) -> tuple[int, int, int]:
    """Viridis-like colour map (5 anchors, linear interpolation) for ``t`` in [0, 1]."""
    anchors = np.array(
        [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], float
    )
    t = min(max(float(t), 0.0), 1.0) * (len(anchors) - 1)
    i = min(int(t), len(anchors) - 2)
    c = anchors[i] + (anchors[i + 1] - anchors[i]) * (t - i)
    r, g, b = (round(float(v)) for v in c)
    return r, g, b


def draw_heatmap(
    rates: Sequence[float] | np.ndarray,
    channel_names: Sequence[str],
    path: str | Path,
    *,
    title: str | None = None,
    cell: int = 30,
    values: bool = True,
) -> Path:
    """Write the selection heat map PNG: three 8x8 panels (Y, Cb, Cr), cell ``(v, u)`` = the
    rate of channel ``k = 8v + u`` (u to the right, v down, DC top left), colour 0 → 1
    (dark purple → yellow, with a colour bar), the rate in percent written in each cell when
    ``values``; channels the store does not have are grey with a cross. Returns the path."""
    grids = rate_grids(rates, channel_names)
    font = ImageFont.load_default()
    pad, gap, head = 16, 22, 20 + (18 if title else 0)
    panel = 8 * cell
    bar_w = 14
    width = pad + 3 * panel + 2 * gap + gap + bar_w + 40
    height = head + panel + 2 * pad + 14
    im = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(im)
    if title:
        d.text((pad, 4), title, fill="black", font=font)
    top = head
    for p, name in enumerate(COMPONENTS):
        x0 = pad + p * (panel + gap)
        d.text((x0 + panel // 2 - 6, top - 16), name, fill="black", font=font)
        for v in range(8):
            for u in range(8):
                r = grids[p, v, u]
                x, y = x0 + u * cell, top + v * cell
                box = (x, y, x + cell - 1, y + cell - 1)
                if np.isnan(r):
                    d.rectangle(box, fill=(200, 200, 200))
                    d.line(box, fill=(160, 160, 160))
                    d.line((box[0], box[3], box[2], box[1]), fill=(160, 160, 160))
                    continue
                colour = _colour(r)
                d.rectangle(box, fill=colour)
                if values and cell >= 20:
                    light = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 140
                    txt = f"{round(100 * r)}"
                    tw = d.textlength(txt, font=font)
                    d.text((box[0] + (cell - tw) / 2, box[1] + cell / 2 - 6), txt,
                           fill="black" if light else "white", font=font)  # fmt: skip
        d.rectangle((x0 - 1, top - 1, x0 + panel, top + panel), outline="black")
        axes = "u (horizontal) ->, v (vertical) down"
        d.text((x0, top + panel + 3), axes, fill="black", font=font)
    bx = pad + 3 * panel + 3 * gap
    for i in range(panel):
        d.line((bx, top + i, bx + bar_w, top + i), fill=_colour(1 - i / (panel - 1)))
    d.rectangle((bx - 1, top - 1, bx + bar_w, top + panel), outline="black")
    d.text((bx + bar_w + 4, top - 4), "1.0", fill="black", font=font)
    d.text((bx + bar_w + 4, top + panel - 8), "0.0", fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format="PNG")
    return path


def static_selection(
    rates: Sequence[float] | np.ndarray, channel_names: Sequence[str], threshold: float = 0.5
) -> dict[str, list[int]]:
    """Channels selected for at least ``threshold`` of the images, as a preset dict
    ``{"y": [...], "cb": [...], "cr": [...]}`` (natural indices ``8v + u``, ascending)."""
    info = channel_info(channel_names)
    rates = np.asarray(rates, dtype=np.float64)
    keep = rates >= threshold
    return {
        key: sorted(int(k) for k in info.k[(info.component == c) & keep])
        for c, key in enumerate(("y", "cb", "cr"))
    }


def save_preset(selection: dict[str, list[int]], path: str | Path) -> Path:
    """Write a :func:`static_selection` as JSON ``{"y": [...], "cb": [...], "cr": [...]}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: selection[k] for k in ("y", "cb", "cr")}) + "\n")
    return path
