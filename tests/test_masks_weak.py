"""Block-wise weak labels and the spectral tools, on hand-made maps and real COCO label maps.

The real label maps are COCO category maps of whole images (instances painted largest
first, crowd regions = 255 = ignore). References written here: an explicit per-cell
majority vote, explicit one-hot FFTs with a band mask from a frequency loop, and
``torch.nn.functional.cross_entropy`` for the pixel CE.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from conftest import DATA
from scipy.ndimage import gaussian_filter

from freqdata.masks import (
    IGNORE_INDEX,
    blockwise,
    ce_spectrum,
    energy_kept,
    full_image_masks,
    grid_size,
    label_spectrum,
    load_coco,
    miou,
    relative_ce_loss_rate,
)

VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"
NUM_CLASSES = 91  # COCO category ids 1..90, 0 = background
DOUBLING = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256]



def category_map(dataset: dict, image_id: int) -> np.ndarray:
    img = next(im for im in dataset["images"] if im["id"] == image_id)
    anns = sorted(
        (a for a in dataset["annotations"] if a["image_id"] == image_id), key=lambda a: -a["area"]
    )
    lab = np.zeros((img["height"], img["width"]), np.uint8)
    for a, m in zip(anns, full_image_masks(dataset, [a["id"] for a in anns]), strict=True):
        lab[m.astype(bool)] = IGNORE_INDEX if a["iscrowd"] else a["category_id"]
    return lab


@pytest.fixture(scope="module")
def maps(data_dir):
    ds = load_coco(VAL)
    # 139: 20 instances, no crowd; 217285: 25 instances, a crowd region (ignore pixels)
    return {i: category_map(ds, i) for i in (139, 217285)}


def reference_blockwise(lab: np.ndarray, nu: int) -> np.ndarray:
    h, w = lab.shape
    g = 2 * nu + 1
    ys = [int(np.ceil(j * h / g)) for j in range(g + 1)]
    xs = [int(np.ceil(j * w / g)) for j in range(g + 1)]
    out = np.empty_like(lab)
    for a in range(g):
        for b in range(g):
            cell = lab[ys[a] : ys[a + 1], xs[b] : xs[b + 1]]
            votes = Counter(int(v) for v in cell.ravel() if v != IGNORE_INDEX)
            if votes:
                top = max(votes.values())
                winner = min(v for v, c in votes.items() if c == top)
            else:
                winner = IGNORE_INDEX
            out[ys[a] : ys[a + 1], xs[b] : xs[b + 1]] = winner
    return out


def test_blockwise_hand_made():
    lab = np.array(
        [[1, 1, 2, 2, 2, 2], [1, 2, 2, 2, 2, 2], [3, 3, 255, 255, 4, 4], [3, 255, 255, 255, 4, 5]],
        dtype=np.uint8,
    )
    # nu = 1: 3 x 3 cells over 4 x 6 (rows 0-1 | 2 | 3, columns 0-1 | 2-3 | 4-5)
    out = blockwise(lab, 1)
    np.testing.assert_array_equal(
        out,
        [[1, 1, 2, 2, 2, 2], [1, 1, 2, 2, 2, 2], [3, 3, 255, 255, 4, 4], [3, 3, 255, 255, 4, 4]],
    )
    # tie (1, 1 vs 2, 2 ... ) goes to the smallest label; ignore does not vote
    tie = np.array([[2, 1], [1, 2]], np.int64)
    assert (blockwise(tie, 0) == 1).all()
    np.testing.assert_array_equal(blockwise(np.array([[255, 255], [255, 7]]), 0), 7)
    np.testing.assert_array_equal(
        blockwise(np.array([[255, 255], [255, 7]]), 0, ignore_index=None), 255
    )
    # an axis whose grid reaches its length is untouched: 5 rows, G = 5
    rect = np.arange(45).reshape(5, 9) % 4
    out = blockwise(rect, 2)
    assert grid_size(2, 5) == 5 and grid_size(2, 9) == 5
    np.testing.assert_array_equal(out, blockwise(rect, 2))
    assert (out[:, [0, 1]] == out[:, [0]]).all()  # columns 0-1 are one cell
    np.testing.assert_array_equal(blockwise(rect, 4), rect)
    with pytest.raises(ValueError):
        blockwise(rect.astype(float), 1)


def test_blockwise_real_maps(maps):
    for lab in maps.values():
        h, w = lab.shape
        # full size returns the input exactly
        np.testing.assert_array_equal(blockwise(lab, (max(h, w) - 1) // 2 + 1), lab)
        np.testing.assert_array_equal(blockwise(lab, 10_000), lab)
        for nu in (0, 3, 12):
            np.testing.assert_array_equal(blockwise(lab, nu), reference_blockwise(lab, nu))


def test_blockwise_miou_rises_with_nu(maps):
    """Measured (139): 0.079 0.079 0.128 0.156 0.284 0.564 0.695 0.828 0.905 0.976 → 1."""
    for lab in maps.values():
        curve = [miou(blockwise(lab, nu), lab) for nu in DOUBLING]
        assert all(b >= a for a, b in itertools.pairwise(curve)), curve
        assert curve[0] < 0.2 and curve[-1] > 0.95, curve
        assert miou(blockwise(lab, 320), lab) == 1.0


def test_miou():
    t = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    p = np.array([[0, 1, 1, 1], [0, 0, 1, 2]])
    # class 0: inter 3, union 4; class 1: inter 3, union 4 (the ignore pixel left out)
    assert miou(p, t) == pytest.approx(0.75)
    assert miou(t, t) == 1.0


def reference_spectrum(lab: np.ndarray) -> np.ndarray:
    spec = np.zeros(lab.shape)
    for c in range(NUM_CLASSES):
        spec += np.abs(np.fft.fft2((lab == c).astype(np.float64))) ** 2
    return spec


def band(shape: tuple[int, int], nu: int) -> np.ndarray:
    """|f_y| <= nu and |f_x| <= nu, frequencies in cycles per image in FFT index order."""
    h, w = shape
    i, j = np.arange(h), np.arange(w)
    fy = np.where(i <= h // 2, i, i - h)
    fx = np.where(j <= w // 2, j, j - w)
    return (np.abs(fy)[:, None] <= nu) & (np.abs(fx)[None, :] <= nu)


def test_label_spectrum_and_energy_kept(maps):
    lab = maps[217285]
    spec = label_spectrum(lab, NUM_CLASSES)
    ref = reference_spectrum(lab)
    np.testing.assert_allclose(spec, ref, rtol=1e-9, atol=1e-6 * ref.max())
    labelled = int((lab != IGNORE_INDEX).sum())
    assert spec.sum() == pytest.approx(lab.size * labelled, rel=1e-12)  # Parseval
    np.testing.assert_array_equal(
        label_spectrum(lab, NUM_CLASSES, shift=True), np.fft.fftshift(spec)
    )
    for nu in (0, 5, 40):
        want = ref[band(lab.shape, nu)].sum() / ref.sum()
        assert energy_kept(lab, nu, NUM_CLASSES) == pytest.approx(want, rel=1e-12)
    every = energy_kept(lab, list(range(0, 330)), NUM_CLASSES)
    assert np.all(np.diff(every) >= 0)
    assert every[-1] == 1.0 and energy_kept(lab, 320, NUM_CLASSES) == 1.0
    assert 0.2 < every[0] < every[16] < 1.0
    with pytest.raises(ValueError):
        label_spectrum(lab, 10)  # category ids up to 90


def blurred_logits(lab: np.ndarray, sigma: float) -> np.ndarray:
    """A stand-in model: log of a Gaussian-smoothed one-hot map (right inside, unsure at
    edges)."""
    logits = np.full((NUM_CLASSES, *lab.shape), np.log(1e-3))
    for c in np.unique(lab[lab != IGNORE_INDEX]):
        logits[c] = np.log(gaussian_filter((lab == c).astype(np.float64), sigma) * 0.97 + 1e-3)
    return logits


def test_ce_spectrum_parseval_and_full_band(maps):
    import torch

    for lab in maps.values():
        logits = blurred_logits(lab, 4.0)
        e = ce_spectrum(logits, lab)
        ce = torch.nn.functional.cross_entropy(
            torch.from_numpy(logits)[None],
            torch.from_numpy(lab.astype(np.int64))[None],
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        ).item()
        assert e.sum() == pytest.approx(ce, rel=1e-10)
        h, w = lab.shape
        assert relative_ce_loss_rate(logits, lab, max(h, w)) == 1.0
        inside = relative_ce_loss_rate(logits, lab, max(h, w) // 2 - 1)
        assert inside == pytest.approx(1.0, abs=1e-2)
        direct = e[band(lab.shape, 7)].sum() / ce
        assert relative_ce_loss_rate(logits, lab, 7) == pytest.approx(direct, rel=1e-9)


def test_relative_ce_loss_rate_converges(maps):
    """Measured (139, blur sigma 4): R = 10.36 7.39 5.07 3.48 2.04 1.09 0.981 0.9998 0.9993
    1.0003 at nu = 0, 1, 2, ..., 256. With this definition the DC term alone is
    ``sum_c count_c * mean(-log p_c)``, above the CE, so R comes down to 1 from above and
    settles within a few 1e-2 by nu = 32 (images of 640 x ~427)."""
    for lab in maps.values():
        r = relative_ce_loss_rate(blurred_logits(lab, 4.0), lab, DOUBLING)
        err = np.abs(r - 1.0)
        assert all(b <= a + 0.03 for a, b in itertools.pairwise(err)), r
        assert r[0] > r[2] > r[4] > 1.0, r
        assert err[DOUBLING.index(64) :].max() < 0.05, r
