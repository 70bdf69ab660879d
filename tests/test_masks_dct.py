"""DCT-Mask vectors against independent float64 references on real COCO masks.

References: ``scipy.fft.dctn(norm="ortho")`` of the full K x K mask, and a zigzag order
written here with an explicit walk (not ``freqdata.dct.zigzag``).
"""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import scipy.fft
from conftest import DATA

from freqdata.masks import (
    dct_decode,
    dct_encode,
    dct_encode_rle,
    load_coco,
    load_instances,
    rle_counts,
)

VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"

# pycocotools' decode trips numpy 2's __array__(copy=...) deprecation; not ours to fix.


def zigzag_positions(k: int, n: int) -> list[tuple[int, int]]:
    """First n (v, u) of JPEG's zigzag extended to k x k, by walking it step by step."""
    out: list[tuple[int, int]] = []
    v = u = 0
    up = True  # JPEG starts by going right, then down-left: even diagonals go up-right
    while len(out) < min(n, k * k):
        out.append((v, u))
        if up:
            if u == k - 1:
                v += 1
                up = False
            elif v == 0:
                u += 1
                up = False
            else:
                v -= 1
                u += 1
        else:
            if v == k - 1:
                u += 1
                up = True
            elif u == 0:
                v += 1
                up = True
            else:
                v += 1
                u -= 1
    return out


def reference_vectors(masks: np.ndarray, n: int) -> np.ndarray:
    k = masks.shape[-1]
    pos = zigzag_positions(k, n)
    out = np.empty((masks.shape[0], n))
    for i, m in enumerate(masks):
        c = scipy.fft.dctn(m.astype(np.float64), norm="ortho")
        out[i] = [c[v, u] for v, u in pos]
    return out


@pytest.fixture(scope="module")
def val(data_dir):
    return load_coco(VAL)


@pytest.fixture(scope="module")
def box128(val):
    return load_instances(val, k=128, method="box")


def test_walked_zigzag_is_jpeg_at_8():
    jpeg = [
        0,
        1,
        8,
        16,
        9,
        2,
        3,
        10,
        17,
        24,
        32,
        25,
        18,
        11,
        4,
        5,
        12,
        19,
        26,
        33,
        40,
        48,
        41,
        34,
        27,
        20,
        13,
        6,
        7,
        14,
        21,
        28,
        35,
        42,
        49,
        56,
        57,
        50,
        43,
        36,
        29,
        22,
        15,
        23,
        30,
        37,
        44,
        51,
        58,
        59,
        52,
        45,
        38,
        31,
        39,
        46,
        53,
        60,
        61,
        54,
        47,
        55,
        62,
        63,
    ]
    assert [8 * v + u for v, u in zigzag_positions(8, 64)] == jpeg
    # n = 300 is exactly the anti-diagonals v + u <= 23 (docs/masks.md §1)
    pos = zigzag_positions(128, 300)
    assert {v + u for v, u in pos} == set(range(24))


@pytest.mark.parametrize("method", ["box", "crop"])
def test_encode_matches_scipy_on_real_masks(val, method):
    inst = load_instances(val, k=128, method=method, image_ids=[139, 350679, 217285])
    assert len(inst) == 20 + 26 + 25 - 1  # one crowd annotation in 350679 / 217285
    ref = reference_vectors(inst.masks, 300)
    got = dct_encode(inst.masks, 300, dtype=np.float64)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11)
    got32 = dct_encode(inst.masks, 300)
    assert got32.dtype == np.float32 and got32.shape == (len(inst), 300)
    np.testing.assert_allclose(got32, ref, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(("k", "n"), [(28, 1), (28, 100), (64, 300), (128, 700), (37, 50)])
def test_encode_any_k_n(box128, k, n):
    rng = np.random.default_rng(k * 1000 + n)
    masks = (rng.random((6, k, k)) > 0.6).astype(np.float32)
    np.testing.assert_allclose(
        dct_encode(masks, n, dtype=np.float64), reference_vectors(masks, n), atol=1e-11
    )


def test_round_trip_lossless_at_full_n(box128):
    masks = box128.masks[:40]
    k = masks.shape[-1]
    vec = dct_encode(masks, k * k, dtype=np.float64)
    np.testing.assert_allclose(dct_decode(vec, k, dtype=np.float64), masks, atol=1e-11)
    # float32 storage still reconstructs the binary mask exactly after thresholding
    rec = dct_decode(dct_encode(masks, k * k), k)
    assert rec.dtype == np.float32
    assert np.array_equal(rec >= 0.5, masks.astype(bool))


def test_decode_is_scipy_idctn_of_scattered_coefficients(box128):
    vec = dct_encode(box128.masks[:10], 300, dtype=np.float64)
    pos = zigzag_positions(128, 300)
    for i in range(10):
        c = np.zeros((128, 128))
        for j, (v, u) in enumerate(pos):
            c[v, u] = vec[i, j]
        ref = scipy.fft.idctn(c, norm="ortho")
        np.testing.assert_allclose(dct_decode(vec[i], 128, dtype=np.float64), ref, atol=1e-12)


def test_leading_dims_and_views(box128):
    masks = box128.masks[:12]
    flat = dct_encode(masks, 300, dtype=np.float64)
    np.testing.assert_array_equal(
        dct_encode(masks.reshape(3, 4, 128, 128), 300, dtype=np.float64).reshape(12, 300), flat
    )
    # a transposed (column-major) view as pycocotools' decode gives it
    fortran = np.asfortranarray(np.moveaxis(masks, 0, -1))
    view = np.moveaxis(fortran, -1, 0)
    assert not view.flags.c_contiguous
    np.testing.assert_allclose(dct_encode(view, 300, dtype=np.float64), flat, atol=1e-12)
    # bool input, single mask
    np.testing.assert_allclose(
        dct_encode(masks[0].astype(bool), 300, dtype=np.float64), flat[0], atol=1e-12
    )
    assert dct_encode(np.zeros((0, 16, 16)), 10).shape == (0, 10)


def test_bad_arguments():
    with pytest.raises(ValueError):
        dct_encode(np.zeros((2, 8, 8)), 65)
    with pytest.raises(ValueError):
        dct_encode(np.zeros((2, 8, 9)), 10)
    with pytest.raises(ValueError):
        dct_decode(np.zeros((2, 10)), 3)  # 10 > 3*3


def test_rle_path_equals_dense_on_real_masks(box128, val):
    got = box128.dct_vectors(300, dtype=np.float64)
    np.testing.assert_allclose(got, dct_encode(box128.masks, 300, dtype=np.float64), atol=1e-11)
    crop = load_instances(val, k=64, method="crop", include_crowd=True)
    np.testing.assert_allclose(
        crop.dct_vectors(500, dtype=np.float64), reference_vectors(crop.masks, 500), atol=1e-11
    )


def test_rle_path_edge_cases():
    rng = np.random.default_rng(1)
    masks = (rng.random((20, 16, 16)) > 0.5).astype(np.uint8)
    masks[0] = 0
    masks[1] = 1
    masks[2, :, :7] = 1  # runs continuing over whole columns
    masks[2, :, 7:] = 0
    masks[3] = 0
    masks[3, 15, 3] = 1  # one pixel at the bottom of a column
    rles = mask_utils.encode(np.asfortranarray(np.moveaxis(masks, 0, -1)))
    np.testing.assert_allclose(
        dct_encode_rle(rles, 256, dtype=np.float64), reference_vectors(masks, 256), atol=1e-12
    )
    # counts round-trip through an uncompressed RLE (COCO crowd format), str counts (JSON)
    counts, offsets = rle_counts(rles)
    for i in range(len(rles)):
        run = counts[offsets[i] : offsets[i + 1]]
        rebuilt = np.repeat(np.arange(run.size) % 2, run).reshape(16, 16, order="F")
        np.testing.assert_array_equal(rebuilt, masks[i])
    mixed = [
        {"size": [16, 16], "counts": counts[offsets[0] : offsets[1]].tolist()},
        {"size": [16, 16], "counts": rles[1]["counts"].decode()},
        *rles[2:4],
    ]
    np.testing.assert_allclose(
        dct_encode_rle(mixed, 30, dtype=np.float64), reference_vectors(masks[:4], 30), atol=1e-12
    )


def test_rle_path_large_counts():
    big = np.zeros((3, 300, 300), np.uint8)  # counts up to 90000: 4-chunk, negative deltas
    big[0, 20:280, 10:150] = 1
    big[1] = 1
    big[1, :3] = 0
    big[2, ::3] = 1
    rles = mask_utils.encode(np.asfortranarray(np.moveaxis(big, 0, -1)))
    np.testing.assert_allclose(
        dct_encode_rle(rles, 300, dtype=np.float64),
        dct_encode(big, 300, dtype=np.float64),
        atol=1e-10,
    )
    with pytest.raises(ValueError):
        dct_encode_rle([{"size": [4, 5], "counts": [20]}], 3)
    with pytest.raises(ValueError):
        dct_encode_rle([{"size": [4, 4], "counts": [3, 2]}], 3)
