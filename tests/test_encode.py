"""encode_image: both paths, presets, chroma modes, and their agreement on real JPEGs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ANTS_BEES, COCO_VAL, ZOO

from freqdata import PRESETS, encode_image, read_coefficients
from freqdata.coefficients import component_cube
from freqdata.dct import block_dct
from freqdata.pixels import load_ycbcr

COCO = sorted(COCO_VAL.glob("*.jpg"))[:8]
ANTS_420 = ANTS_BEES / "train/ants/175998972.jpg"


@pytest.mark.parametrize("preset", ["dctnet-6", "dctnet-24", "dctnet-64", "all", "zigzag-10-3"])
def test_coeff_cube_is_the_jpeg_coefficients(data_dir, preset):
    path = COCO[0]
    cube = encode_image(path, preset)
    coefs = read_coefficients(path)
    p = PRESETS.get(preset)
    ny = len(p.y) if p else 10
    assert cube.dtype == np.int16 and cube.shape[1:] == coefs.planes[0].shape[:2]
    y_ref = np.moveaxis(coefs.planes[0], -1, 0)[p.y if p else [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]]
    np.testing.assert_array_equal(cube[:ny], y_ref)


def test_coeff_and_pixel_paths_agree_on_444(data_dir):
    """Geometry none, 4:4:4: only the decoder's rounding/clipping separates the two paths."""
    diffs = []
    for path in COCO:
        a = encode_image(path, "all", "coeff").astype(np.float64)
        b = encode_image(path, "all", "pixels").astype(np.float64)
        assert a.shape == b.shape
        d = np.abs(a - b)
        assert np.abs(a[0] - b[0]).mean() < 0.3, path  # measured: luma DC 0.11 on average
        assert np.percentile(d, 99.9) <= 3, path
        diffs.append(d.mean())
    # measured on these 8 COCO images: mean |diff| over all 192 channels 0.078
    assert np.mean(diffs) < 0.2


def test_coeff_and_pixel_paths_agree_on_420(data_dir):
    """4:2:0: chroma differs by box vs libjpeg's fancy upsampling, luma by rounding only."""
    a = encode_image(ANTS_420, "dctnet-24", "coeff").astype(np.float64)
    b = encode_image(ANTS_420, "dctnet-24", "pixels").astype(np.float64)
    assert np.abs(a[:16] - b[:16]).mean() < 0.05  # measured 0.009
    # chroma: box vs triangular upsampling of the same chroma samples (measured 0.59)
    assert np.abs(a[16:] - b[16:]).mean() < 1.0


def test_pixel_cube_is_block_dct_of_ycbcr_planes(data_dir):
    img = load_ycbcr(COCO[1], "resnet")
    cube = encode_image(COCO[1], "dctnet-24", "pixels", "resnet")
    p = PRESETS["dctnet-24"]
    ref = np.concatenate(
        [
            block_dct(img.planes[0], p.y, dtype=np.float64),
            block_dct(img.planes[1], p.cb, dtype=np.float64),
            block_dct(img.planes[2], p.cr, dtype=np.float64),
        ]
    )
    assert cube.shape == (24, 56, 56)
    assert np.abs(cube - ref).max() <= 0.5 + 1e-3


def test_mobilenet_and_custom_geometry(data_dir):
    assert encode_image(COCO[2], "dctnet-6", "pixels", "mobilenet").shape == (6, 112, 112)
    assert encode_image(COCO[2], "dctnet-6", "pixels", "256:224").shape == (6, 28, 28)


def test_native_chroma_both_paths(data_dir):
    yl, c = encode_image(ANTS_420, "dctnet-24", chroma="native")
    coefs = read_coefficients(ANTS_420)
    assert yl.shape == (16, *coefs.planes[0].shape[:2])
    assert c.shape == (8, *coefs.planes[1].shape[:2])
    np.testing.assert_array_equal(c[:4], component_cube(coefs, 1, [0, 1, 8, 9], upsample=False))
    pl, pc = encode_image(ANTS_420, "dctnet-24", "pixels", chroma="native")
    assert pl.shape == yl.shape and pc.shape == c.shape
    assert np.abs(pc[0].astype(float) - c[0]).mean() < 4.0  # chroma DC, box vs fancy


def test_random_augmentation_is_seeded(data_dir):
    a = encode_image(COCO[3], "dctnet-6", "pixels", "resnet", rng=np.random.default_rng(1))
    b = encode_image(COCO[3], "dctnet-6", "pixels", "resnet", rng=np.random.default_rng(1))
    c = encode_image(COCO[3], "dctnet-6", "pixels", "resnet", rng=np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert a.shape == c.shape == (6, 56, 56) and not np.array_equal(a, c)


def test_orientation_both_paths_agree(data_dir):
    ref = encode_image(ZOO / "pillow/hopper.jpg", "dctnet-6", "pixels").astype(np.float64)
    for k in range(2, 9):
        path = ZOO / f"pillow/hopper_orientation_{k}.jpg"
        for which in ("coeff", "pixels"):
            got = encode_image(path, "dctnet-6", which).astype(np.float64)
            assert got.shape == ref.shape
            assert np.abs(got[0] - ref[0]).mean() < 8.0, (k, which)  # same picture, upright


def test_bad_options(data_dir):
    with pytest.raises(ValueError, match="path='pixels'"):
        encode_image(COCO[0], geometry="resnet")
    with pytest.raises(ValueError, match="unknown path"):
        encode_image(COCO[0], path="gpu")
    with pytest.raises(ValueError, match="unknown chroma"):
        encode_image(COCO[0], chroma="420")
