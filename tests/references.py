"""Straightforward float64 references shared by several test files."""

from __future__ import annotations

import math

import numpy as np


def roi_bilinear(f: np.ndarray, y: float, x: float) -> np.ndarray | float:
    """detectron2 / torchvision ROIAlign ``bilinear_interpolate`` of ``f`` ``(..., H, W)`` at
    ``(y, x)``: 0 outside ``[-1, H] x [-1, W]``, coordinates clamped to the last row/column."""
    h, w = f.shape[-2:]
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return np.zeros(f.shape[:-2]) if f.ndim > 2 else 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = math.floor(y), math.floor(x)
    if yl >= h - 1:
        yl = yh = h - 1
        y = float(yl)
    else:
        yh = yl + 1
    if xl >= w - 1:
        xl = xh = w - 1
        x = float(xl)
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    return ((1 - ly) * (1 - lx) * f[..., yl, xl] + (1 - ly) * lx * f[..., yl, xh]
            + ly * (1 - lx) * f[..., yh, xl] + ly * lx * f[..., yh, xh])  # fmt: skip
