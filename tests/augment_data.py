"""Real-image DCT batches shared by the ``test_augment_*`` files."""

from __future__ import annotations

import numpy as np
from conftest import DATA

from freqdata import encode_image

IMAGENET = DATA / "imagenet-sample" / "images"
ALL_NAMES = [f"{c}{k}" for c in ("Y", "Cb", "Cr") for k in range(64)]


def full_batch(n: int, grid: tuple[int, int] | None = None, start: int = 0) -> np.ndarray:
    """``(n, 192, Hb, Wb)`` float64: all 64 coefficients of Y, Cb, Cr of ``n`` ImageNet
    sample JPEGs (coefficient path), each cut to a common block grid (top left)."""
    files = sorted(IMAGENET.glob("*.JPEG"))[start : start + n]
    cubes = [encode_image(f, preset="all", path="coeff").astype(np.float64) for f in files]
    hb, wb = grid or (min(c.shape[1] for c in cubes), min(c.shape[2] for c in cubes))
    return np.stack([c[:, :hb, :wb] for c in cubes])


def pixels(batch: np.ndarray) -> np.ndarray:
    """``(n, 192, Hb, Wb)`` → ``(n, 3, 8 Hb, 8 Wb)`` float64 YCbCr samples (scipy IDCT)."""
    from scipy.fft import idctn

    n, _, hb, wb = batch.shape
    c = batch.reshape(n, 3, 8, 8, hb, wb).transpose(0, 1, 4, 5, 2, 3)  # (n, 3, hb, wb, v, u)
    p = idctn(c, axes=(-2, -1), norm="ortho")
    return p.transpose(0, 1, 2, 4, 3, 5).reshape(n, 3, hb * 8, wb * 8) + 128.0


def coefficients(planes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pixels`: ``(n, 3, H, W)`` samples → ``(n, 192, H/8, W/8)`` (scipy)."""
    from scipy.fft import dctn

    n, _, h, w = planes.shape
    hb, wb = h // 8, w // 8
    b = (planes - 128.0).reshape(n, 3, hb, 8, wb, 8).transpose(0, 1, 2, 4, 3, 5)
    c = dctn(b, axes=(-2, -1), norm="ortho")  # (n, 3, hb, wb, v, u)
    return c.transpose(0, 1, 4, 5, 2, 3).reshape(n, 192, hb, wb)
