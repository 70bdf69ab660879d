"""PatchDCT patch vectors and labels: hand-made edge cases and real COCO masks vs scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
from conftest import DATA

from freqdata.masks import (
    BACKGROUND,
    FOREGROUND,
    MIXED,
    load_instances,
    patch_decode,
    patch_encode,
)

VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"
# (v, u) of the first six 8x8 zigzag positions, as the paper lists them
SIX = [(0, 0), (0, 1), (1, 0), (2, 0), (1, 1), (0, 2)]



def test_labels_on_hand_made_masks():
    m = np.zeros((5, 112, 112), np.uint8)
    m[1] = 1  # all ones
    m[2, 50, 60] = 1  # one pixel: patch (6, 7)
    m[3, 16:24, 40:48] = 1  # exactly one patch full: patch (2, 5)
    m[4, 16:24, 40:48] = 1
    m[4, 15, 40] = 1  # ... plus one pixel of the patch above: (1, 5) mixed, (2, 5) full
    vec, lab = patch_encode(m)
    assert vec.shape == (5, 14, 14, 6) and vec.dtype == np.float32
    assert lab.shape == (5, 14, 14) and lab.dtype == np.uint8
    assert (lab[0] == BACKGROUND).all() and not vec[0].any()
    assert (lab[1] == FOREGROUND).all()
    np.testing.assert_array_equal(vec[1].reshape(-1, 6), np.tile([8, 0, 0, 0, 0, 0], (196, 1)))
    expect = np.zeros((14, 14), np.uint8)
    expect[6, 7] = MIXED
    np.testing.assert_array_equal(lab[2], expect)
    np.testing.assert_allclose(vec[2, 6, 7, 0], 1 / 8)  # DC of one pixel
    expect = np.zeros((14, 14), np.uint8)
    expect[2, 5] = FOREGROUND
    np.testing.assert_array_equal(lab[3], expect)
    np.testing.assert_allclose(vec[3, 2, 5], [8, 0, 0, 0, 0, 0], atol=1e-6)
    expect[1, 5] = MIXED
    np.testing.assert_array_equal(lab[4], expect)
    # 63 of 64 pixels is mixed even though its DC (7.875) rounds close to 8 in float32
    near = np.ones((1, 112, 112), np.float32)
    near[0, 0, 0] = 0.0
    assert patch_encode(near)[1][0, 0, 0] == MIXED
    # soft input is binarized at 0.5; bool input works; an unbatched mask gives unbatched out
    soft = np.full((112, 112), 0.5, np.float32)
    soft[:8, :8] = 0.49
    _v1, l1 = patch_encode(soft)
    assert l1.shape == (14, 14) and l1[0, 0] == BACKGROUND and (l1.ravel()[1:] == 2).all()
    np.testing.assert_array_equal(patch_encode(m.astype(bool))[1], lab)


def test_vectors_match_scipy_per_patch_on_real_masks(data_dir):
    inst = load_instances(VAL, k=112, method="box", image_ids=[139, 350679])
    masks = inst.masks
    vec, lab = patch_encode(masks)
    for i in range(0, len(masks), 3):
        for pi in range(14):
            for pj in range(14):
                patch = masks[i, 8 * pi : 8 * pi + 8, 8 * pj : 8 * pj + 8].astype(np.float64)
                c = scipy.fft.dctn(patch, norm="ortho")
                np.testing.assert_allclose(
                    vec[i, pi, pj], [c[v, u] for v, u in SIX], rtol=1e-6, atol=1e-6
                )
                count = int(patch.sum())
                want = BACKGROUND if count == 0 else FOREGROUND if count == 64 else MIXED
                assert lab[i, pi, pj] == want
    assert {0, 1, 2} <= set(np.unique(lab))


def test_decode():
    rng = np.random.default_rng(3)
    m = (rng.random((4, 112, 112)) > 0.5).astype(np.uint8)
    m[0] = 0
    m[0, 20:70, 30:90] = 1
    vec, lab = patch_encode(m)
    rec = patch_decode(vec, lab)
    assert rec.shape == (4, 112, 112) and rec.dtype == np.float32
    blocks = rec.reshape(4, 14, 8, 14, 8).transpose(0, 1, 3, 2, 4)
    assert (blocks[lab == BACKGROUND] == 0).all()
    assert (blocks[lab == FOREGROUND] == 1).all()
    # mixed patches: inverse DCT of the six coefficients with the others zero
    i, pi, pj = np.argwhere(lab == MIXED)[0]
    c = np.zeros((8, 8))
    for j, (v, u) in enumerate(SIX):
        c[v, u] = vec[i, pi, pj, j]
    np.testing.assert_allclose(blocks[i, pi, pj], scipy.fft.idctn(c, norm="ortho"), atol=1e-5)
    # all 64 coefficients: lossless
    v64, l64 = patch_encode(m, dims=64)
    np.testing.assert_allclose(patch_decode(v64, l64), m, atol=1e-5)
    # a rectangle with edges on the patch grid decodes exactly
    grid_aligned = np.zeros((1, 112, 112), np.uint8)
    grid_aligned[0, 16:64, 8:96] = 1
    v, lb = patch_encode(grid_aligned)
    np.testing.assert_array_equal(patch_decode(v, lb), grid_aligned)


def test_errors():
    with pytest.raises(ValueError):
        patch_encode(np.zeros((1, 100, 112)))
    with pytest.raises(ValueError):
        patch_encode(np.zeros((1, 112, 112)), dims=65)
    with pytest.raises(ValueError):
        patch_decode(np.zeros((1, 14, 14, 6)), np.zeros((1, 13, 14)))
