"""Mixup, block-aligned cutmix and random erasing on real DCT batches (pixel references)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from augment_data import coefficients, full_batch, pixels

from freqdata.augment import RandomErasing, cutmix, erase, mixup
from freqdata.augment.mix import beta
from freqdata.errors import UsageError


@pytest.fixture(scope="module")
def batch(data_dir):
    return full_batch(4, grid=(20, 28))


LABELS = torch.tensor([0, 2, 1, 2])


def test_mixup_equals_pixel_mixup(batch):
    x, y, lam = mixup(torch.as_tensor(batch), LABELS, 3, 0.4, torch.Generator().manual_seed(1))
    pix = pixels(batch)
    ref = coefficients(lam * pix + (1 - lam) * np.roll(pix, 1, 0))
    np.testing.assert_allclose(x.numpy(), ref, atol=1e-9)
    onehot = np.eye(3)[LABELS.numpy()]
    np.testing.assert_allclose(y.numpy(), lam * onehot + (1 - lam) * np.roll(onehot, 1, 0))
    again = mixup(torch.as_tensor(batch), LABELS, 3, 0.4, torch.Generator().manual_seed(1))[2]
    assert again == lam


def test_beta_draws_follow_beta():
    g = torch.Generator().manual_seed(0)
    lam = np.array([beta(0.4, g) for _ in range(4000)])
    assert abs(lam.mean() - 0.5) < 0.02
    assert abs(lam.var() - 0.25 / (2 * 0.4 + 1)) < 0.01  # var of Beta(a, a) = 1 / (4 (2a + 1))
    with pytest.raises(UsageError):
        beta(0.0, g)


def test_cutmix_equals_pixel_cutmix_with_torchvisions_box(batch):
    _, _, hb, wb = batch.shape
    x, y, box = cutmix(torch.as_tensor(batch), LABELS, 3, 1.0, torch.Generator().manual_seed(4))
    # torchvision v2.CutMix._get_params with the same draws, on the block grid
    g = torch.Generator().manual_seed(4)
    lam = beta(1.0, g)
    r_x, r_y = torch.randint(wb, (1,), generator=g), torch.randint(hb, (1,), generator=g)
    r = 0.5 * math.sqrt(1.0 - lam)
    r_w_half, r_h_half = int(r * wb), int(r * hb)
    x1 = int(torch.clamp(r_x - r_w_half, min=0))
    y1 = int(torch.clamp(r_y - r_h_half, min=0))
    x2 = int(torch.clamp(r_x + r_w_half, max=wb))
    y2 = int(torch.clamp(r_y + r_h_half, max=hb))
    assert box == (y1, x1, y2, x2) and (y2 - y1) * (x2 - x1) > 0
    pix = pixels(batch)
    ref = pix.copy()
    rows, cols = slice(8 * y1, 8 * y2), slice(8 * x1, 8 * x2)
    ref[..., rows, cols] = np.roll(pix, 1, 0)[..., rows, cols]
    np.testing.assert_allclose(x.numpy(), coefficients(ref), atol=1e-9)
    lam = 1.0 - (x2 - x1) * (y2 - y1) / (wb * hb)
    onehot = np.eye(3)[LABELS.numpy()]
    np.testing.assert_allclose(y.numpy(), lam * onehot + (1 - lam) * np.roll(onehot, 1, 0))


def test_random_erasing_fills_block_boxes(batch):
    x = torch.as_tensor(batch)
    out, boxes = RandomErasing(p=1.0, seed=3)(x)
    assert bool((boxes[:, 2] > 0).all())
    pix = pixels(batch)
    for i, (t, lf, h, w) in enumerate(boxes.tolist()):
        pix[i, :, 8 * t : 8 * (t + h), 8 * lf : 8 * (lf + w)] = 128.0  # value 0 = mid grey
    np.testing.assert_allclose(out.numpy(), coefficients(pix), atol=1e-9)
    mean = torch.arange(192, dtype=torch.float64)
    filled = erase(x, boxes, mean)
    t, lf = boxes[0, :2].tolist()
    assert torch.equal(filled[0, :, t, lf], mean)
    assert torch.equal(RandomErasing(p=0.0)(x)[0], x)
