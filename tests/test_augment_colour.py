"""Colour ops in YCbCr coefficients against float64 pixel references (RGB definitions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from augment_data import ALL_NAMES, coefficients, full_batch, pixels
from scipy.ndimage import correlate

from freqdata.augment import adjust_colour, sharpen
from freqdata.errors import UsageError
from freqdata.presets import PRESETS

# JFIF YCbCr <-> RGB (docs/conventions.md), float64, no clipping
_FWD = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_INV = np.linalg.inv(_FWD)
_OFF = np.array([0.0, 128.0, 128.0])


def _rgb(ycc: np.ndarray) -> np.ndarray:
    return np.einsum("ij,njhw->nihw", _INV, ycc - _OFF[:, None, None])


def _ycc(rgb: np.ndarray) -> np.ndarray:
    return np.einsum("ij,njhw->nihw", _FWD, rgb) + _OFF[:, None, None]


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.einsum("j,njhw->nhw", _FWD[0], rgb)[:, None]


# torchvision's functional definitions (tensor branch), without the clamp
def tv_brightness(img, f):
    return f * img


def tv_contrast(img, f):
    mean = _grey(img).mean(axis=(-3, -2, -1), keepdims=True)
    return f * img + (1 - f) * mean


def tv_saturation(img, f):
    return f * img + (1 - f) * _grey(img)


@pytest.fixture(scope="module")
def batch(data_dir):
    return full_batch(4, grid=(30, 40))


def test_brightness_contrast_saturation_equal_rgb_definitions(batch):
    rng = np.random.default_rng(0)
    b, c, s = (rng.uniform(0.3, 1.8, 4) for _ in range(3))
    rgb = _rgb(pixels(batch))
    ref = []
    for i in range(4):
        img = rgb[i : i + 1]
        ops = [(tv_brightness, b[i]), (tv_contrast, c[i]), (tv_saturation, s[i])]
        for j in rng.permutation(3):  # ColorJitter's random order: irrelevant without clipping
            img = ops[j][0](img, ops[j][1])
        ref.append(img[0])
    ref = coefficients(_ycc(np.stack(ref)))
    got = adjust_colour(torch.as_tensor(batch), ALL_NAMES, *map(torch.as_tensor, (b, c, s)))
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-8)
    assert np.abs(got.numpy() - batch).max() > 100  # the ops did something


def test_hue_rotates_cb_cr_pixels(batch):
    h = torch.tensor([0.1, -0.25, 0.5, 0.0], dtype=torch.float64)
    pix = pixels(batch)
    ang = 2 * np.pi * h.numpy()[:, None, None]
    cb, cr = pix[:, 1] - 128, pix[:, 2] - 128
    ref = np.stack([pix[:, 0], np.cos(ang) * cb - np.sin(ang) * cr + 128,
                    np.sin(ang) * cb + np.cos(ang) * cr + 128], 1)  # fmt: skip
    got = adjust_colour(torch.as_tensor(batch), ALL_NAMES, hue=h)
    np.testing.assert_allclose(got.numpy(), coefficients(ref), atol=1e-8)


def test_hue_direction_follows_hsv():
    """A positive hue turns pure red towards yellow (as torchvision's HSV hue shift)."""
    red = np.zeros((1, 3, 8, 8))
    red[:, 0] = 200.0
    ycc = coefficients(_ycc(red))
    out = adjust_colour(torch.as_tensor(ycc), ALL_NAMES, hue=0.08).numpy()
    rgb = _rgb(pixels(out))[0, :, 0, 0]
    assert rgb[1] > 20 and rgb[0] > rgb[1] > rgb[2]


def test_colour_on_a_preset_and_errors(batch):
    p = PRESETS["dctnet-24"]
    names = [f"Y{k}" for k in p.y] + [f"Cb{k}" for k in p.cb] + [f"Cr{k}" for k in p.cr]
    idx = p.y + [64 + k for k in p.cb] + [128 + k for k in p.cr]
    args = dict(brightness=1.3, contrast=0.7, saturation=1.5, hue=0.2)
    full = adjust_colour(torch.as_tensor(batch), ALL_NAMES, **args)[:, idx]
    got = adjust_colour(torch.as_tensor(batch[:, idx]), names, **args)
    np.testing.assert_allclose(got.numpy(), full.numpy(), atol=1e-9)  # channel-wise: exact
    x16 = torch.as_tensor(np.rint(batch[:, idx]).astype(np.int16))
    assert adjust_colour(x16, names, brightness=1.1).dtype == torch.float32
    with pytest.raises(UsageError, match="Y0"):
        adjust_colour(torch.as_tensor(batch[:, 1:3]), ["Y1", "Y2"], contrast=0.5)
    with pytest.raises(UsageError, match="Cb and Cr"):
        adjust_colour(torch.as_tensor(batch[:, [64, 129]]), ["Cb0", "Cr1"], hue=0.1)


def test_sharpness_is_the_per_block_blend(batch):
    f = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    pix = pixels(batch)
    n, c, h, w = pix.shape
    blocks = pix.reshape(n, c, h // 8, 8, w // 8, 8)
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float64) / 13
    k5 = kernel[None, None, None, :, None, :]  # correlate over the in-block axes only
    blurred = correlate(blocks, k5, mode="reflect")  # reflect = half-sample symmetric
    fb = f.numpy()[:, None, None, None, None, None]
    ref = (fb * blocks + (1 - fb) * blurred).reshape(n, c, h, w)
    got = sharpen(torch.as_tensor(batch), ALL_NAMES, f)
    np.testing.assert_allclose(got.numpy(), coefficients(ref), atol=1e-8)
    np.testing.assert_allclose(got[2].numpy(), batch[2], atol=1e-12)
