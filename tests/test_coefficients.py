"""DCT-domain chroma upsampling and orientation against pixel-domain references (float64)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import simplejpeg
from conftest import ANTS_BEES, COCO_VAL, ZOO
from PIL import Image

from freqdata.coefficients import EXIF_ORIENTATIONS, component_cube, upsample_matrix
from freqdata.dct import block_dct, block_idct, dct_matrix
from freqdata.jpeg import read_coefficients

# PIL's own transposes for each EXIF orientation: an independent statement of the semantics.
PIL_OPS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}  # fmt: skip


def _pixels(plane: np.ndarray) -> np.ndarray:
    """Reference inverse: a (Hb, Wb, 64) coefficient plane → float64 samples."""
    return block_idct(np.moveaxis(plane.astype(np.float64), -1, 0))


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_upsample_matrix_is_dct_of_repeated_samples(factor):
    rng = np.random.default_rng(factor)
    x = rng.uniform(-128, 127, size=8)
    d = dct_matrix()
    up = np.repeat(x, factor)
    for phase in range(factor):
        ref = d @ up[8 * phase : 8 * phase + 8]
        np.testing.assert_allclose(upsample_matrix(factor, phase) @ (d @ x), ref, atol=1e-9)


@pytest.mark.parametrize(
    "rel",
    [
        "train/ants/175998972.jpg",  # 4:2:0
        "val/ants/ants-devouring-remains-of-large-dead-insect-on-red-tile-in-Stellenbosch-"
        "South-Africa-closeup-1-DHD.jpg",  # 4:2:2
        "train/ants/Nepenthes_rafflesiana_ant.jpg",  # 4:4:0
    ],
)
def test_full_chroma_equals_dct_of_box_upsampled_pixels(data_dir, rel):
    coefs = read_coefficients(ANTS_BEES / rel)
    (hy, vy), (hc, vc) = coefs.sampling[0], coefs.sampling[1]
    assert (hy, vy) != (hc, vc)
    luma_hb, luma_wb = coefs.planes[0].shape[:2]
    for comp in (1, 2):
        got = component_cube(coefs, comp, range(64), upsample=True)
        px = _pixels(coefs.planes[comp])
        up = np.repeat(np.repeat(px, vy // vc, axis=0), hy // hc, axis=1)
        ref = block_dct(up, dtype=np.float64)[:, :luma_hb, :luma_wb]
        assert got.shape == ref.shape and got.dtype == np.int16
        assert np.abs(got - ref).max() <= 0.5 + 1e-6  # exact, then rounded to int16


def test_411_full_chroma_from_a_real_image(data_dir):
    """No real 4:1:1 file exists in the data: make one from a real photo (libjpeg-turbo)."""
    rgb = np.asarray(Image.open(COCO_VAL / "000000000139.jpg").convert("RGB"))
    data = simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=90, colorsubsampling="411")
    coefs = read_coefficients(data)
    assert coefs.sampling == ((4, 1), (1, 1), (1, 1))
    got = component_cube(coefs, 2, range(64), upsample=True)
    up = np.repeat(_pixels(coefs.planes[2]), 4, axis=1)
    ref = block_dct(up, dtype=np.float64)[:, :, : coefs.planes[0].shape[1]]
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 0.5 + 1e-6


def test_native_chroma_keeps_file_sampling(data_dir):
    coefs = read_coefficients(ANTS_BEES / "train/ants/175998972.jpg")
    got = component_cube(coefs, 1, [0, 1, 8], upsample=False, orient=False)
    assert got.shape == (3, *coefs.planes[1].shape[:2])
    np.testing.assert_array_equal(got, np.moveaxis(coefs.planes[1][..., [0, 1, 8]], -1, 0))


@pytest.mark.parametrize("orientation", range(2, 9))
def test_orientation_matches_pixel_transpose(data_dir, orientation):
    # 128x128 hopper: whole blocks and whole MCUs, so the DCT-domain transform is exact.
    coefs = read_coefficients(ZOO / "pillow" / f"hopper_orientation_{orientation}.jpg")
    assert coefs.orientation == orientation
    for comp, upsample in ((0, False), (1, True), (2, False)):
        got = component_cube(coefs, comp, range(64), upsample=upsample)
        plain = component_cube(coefs, comp, range(64), upsample=upsample, orient=False)
        px = Image.fromarray(block_idct(plain.astype(np.float64)).astype(np.float32), mode="F")
        ref = block_dct(
            np.asarray(px.transpose(PIL_OPS[orientation]), np.float64), dtype=np.float64
        )
        assert np.abs(got - ref).max() <= 0.5 + 1e-3, comp


def test_orientation_table_covers_exif():
    assert sorted(EXIF_ORIENTATIONS) == list(range(1, 9))


def test_grayscale_chroma_is_zero(data_dir):
    coefs = read_coefficients(ZOO / "pillow" / "hopper_gray.jpg")
    cb = component_cube(coefs, 1, [0, 1], upsample=True)
    assert cb.shape == (2, *coefs.planes[0].shape[:2]) and not cb.any()


def test_unknown_orientation_is_identity(data_dir):
    coefs = read_coefficients(ZOO / "pillow" / "hopper.jpg")
    odd = dataclasses.replace(coefs, orientation=9)
    np.testing.assert_array_equal(
        component_cube(odd, 0, [0, 1], upsample=False),
        component_cube(coefs, 0, [0, 1], upsample=False),
    )
