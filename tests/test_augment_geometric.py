"""Flips, transpose, rot90 and block translation in the DCT domain, against pixel references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from augment_data import ALL_NAMES, coefficients, full_batch, pixels

from freqdata.augment import flip, rot90, translate_blocks, transpose
from freqdata.errors import UsageError
from freqdata.presets import PRESETS, resolve_preset


@pytest.fixture(scope="module")
def batch(data_dir):
    return full_batch(4, grid=(24, 24))  # square grid: per-sample transposes allowed


def _names(preset: str) -> tuple[list[str], list[int]]:
    p = resolve_preset(preset)
    names = [f"Y{k}" for k in p.y] + [f"Cb{k}" for k in p.cb] + [f"Cr{k}" for k in p.cr]
    return names, p.y + [64 + k for k in p.cb] + [128 + k for k in p.cr]


@pytest.mark.parametrize("axis", ["h", "v"])
def test_flip_equals_dct_of_flipped_pixels(batch, axis):
    ref = coefficients(pixels(batch)[..., ::-1] if axis == "h" else pixels(batch)[..., ::-1, :])
    got = flip(torch.as_tensor(batch), ALL_NAMES, axis)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-9)


def test_per_sample_flip_and_int16_stays_exact(batch):
    x16 = torch.as_tensor(np.rint(batch).astype(np.int16))
    mask = torch.tensor([True, False, True, False])
    got = flip(x16, ALL_NAMES, "v", mask)
    assert got.dtype == torch.int16
    assert torch.equal(got[1], x16[1]) and torch.equal(got[3], x16[3])
    assert torch.equal(got[0], flip(x16[:1], ALL_NAMES, "v")[0])
    assert torch.equal(flip(got, ALL_NAMES, "v", mask), x16)  # an involution


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rot90_equals_dct_of_rotated_pixels(batch, k):
    ref = coefficients(np.ascontiguousarray(np.rot90(pixels(batch), k, axes=(-2, -1))))
    got = rot90(torch.as_tensor(batch), ALL_NAMES, k)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-9)


def test_transpose_on_a_rectangle_and_per_sample_turns(data_dir):
    rect = full_batch(2, grid=(20, 30), start=10)
    ref = coefficients(np.ascontiguousarray(pixels(rect).swapaxes(-1, -2)))
    got = transpose(torch.as_tensor(rect), ALL_NAMES)
    assert got.shape == (2, 192, 30, 20)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-9)
    with pytest.raises(UsageError):
        transpose(torch.as_tensor(rect), ALL_NAMES, torch.tensor([True, False]))
    with pytest.raises(UsageError):
        rot90(torch.as_tensor(rect), ALL_NAMES, torch.tensor([1, 0]))
    sq = torch.as_tensor(rect[:, :, :20, :20])
    turns = torch.tensor([3, 1])
    got = rot90(sq, ALL_NAMES, turns)
    for i, t in enumerate(turns.tolist()):
        assert torch.equal(got[i], rot90(sq[i : i + 1], ALL_NAMES, t)[0])


@pytest.mark.parametrize(
    "preset", [*(p for p in PRESETS if p != "all"), "zigzag-21-6", "zigzag-20-6"]
)
def test_transpose_of_a_preset_is_that_of_the_low_pass_image(batch, preset):
    """The stored channels of the transposed image the stored channels describe (exact)."""
    names, idx = _names(preset)
    low = np.zeros_like(batch)
    low[:, idx] = batch[:, idx]
    full = transpose(torch.as_tensor(low), ALL_NAMES)[:, idx]
    got = transpose(torch.as_tensor(batch[:, idx]), names)
    assert torch.equal(got, full)
    symmetric = preset in ("dctnet-6", "dctnet-24", "dctnet-48", "zigzag-21-6")
    assert torch.equal(got, transpose(torch.as_tensor(batch), ALL_NAMES)[:, idx]) == symmetric


def test_translate_blocks_equals_shifted_pixels(batch):
    x = torch.as_tensor(batch)
    dy, dx = torch.tensor([2, -3, 0, 30]), torch.tensor([-1, 0, 5, 0])
    got = translate_blocks(x, ALL_NAMES, dy, dx, fill=0.0)
    pix = pixels(batch)
    ref = np.empty_like(pix)
    ref[:, 0], ref[:, 1:] = 0.0, 128.0  # black, neutral chroma
    h, w = pix.shape[-2:]
    for i in range(4):
        for r in range(h):
            for c in range(w):
                sr, sc = r - 8 * int(dy[i]), c - 8 * int(dx[i])
                if 0 <= sr < h and 0 <= sc < w:
                    ref[i, :, r, c] = pix[i, :, sr, sc]
    np.testing.assert_allclose(got.numpy(), coefficients(ref), atol=1e-9)
