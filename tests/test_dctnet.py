"""freqdata.dctnet: DCTNet's evaluation transform, against the real encoder on real images.

The reference is built the way kaix90/DCTNet builds its inputs (``cvfunctional.resize``,
``center_crop``, ``upscale``, ``transform_dct``), with the sizes and offsets written out
here from DCTNet's formulas, and the JPEG step done by a real libjpeg-turbo encoder
(Pillow, quality 100, 4:2:0) whose coefficients are read back with
:func:`freqdata.read_coefficients`. With OpenCV installed (the ``dev`` extra) the resizes
are ``cv2.resize`` itself, so the whole chain is the official one; without it they are
:func:`freqdata.dctnet.resize_linear`, checked here against a float64 bilinear reference.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import ANTS_BEES, COCO_VAL, ZOO
from hostile import renumber_restarts
from PIL import Image

from freqdata import (
    PRESETS,
    EncodeOptions,
    encode_image,
    encode_images,
    open_store,
    read_coefficients,
)
from freqdata.dctnet import (
    STATISTICS,
    dctnet_planes,
    downsample_h2v2,
    encode_dctnet,
    fdct_islow,
    named_statistics,
    resize_linear,
)
from freqdata.errors import UsageError
from freqdata.jpeg import DamagedJpegWarning
from freqdata.pixels import ImageDecodeError, load_rgb

IMAGES = [
    COCO_VAL / "000000092660.jpg",  # 640x427 4:4:4: window at x = round(159.5) = 160
    COCO_VAL / "000000019221.jpg",  # 640x478 -> 685x512, x = round(118.5) = 118
    COCO_VAL / "000000012280.jpg",  # 480x640 portrait -> 512x682
    COCO_VAL / "000000431848.jpg",  # grayscale: Cb = Cr = 128, chroma coefficients 0
    ANTS_BEES / "train" / "ants" / "1286984635_5119e80de1.jpg",  # 500x375
    ZOO / "pypi-wheels" / "grace_hopper.jpg",  # 512x600 4:2:0: shorter side already 512
]


@pytest.fixture(autouse=True)
def _need_data(data_dir: Path) -> None:
    """Every test here reads the real images; skip cleanly without them."""


def _cv2():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    cv2 = _cv2()
    if cv2 is None:
        return resize_linear(rgb, width, height)
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)


def _libjpeg_q100_420(rgb: np.ndarray) -> list[np.ndarray]:
    """Y, Cb, Cr coefficients ``(64, Hb, Wb)`` of a real quality-100 4:2:0 JPEG of ``rgb``."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "JPEG", quality=100, subsampling=2)
    coefs = read_coefficients(buf.getvalue())
    assert coefs.sampling == ((2, 2), (1, 1), (1, 1))
    assert all((q == 1).all() for q in coefs.quant_tables)  # quality 100: every step 1
    return [p.transpose(2, 0, 1).astype(np.int64) for p in coefs.planes]


def _official(path: Path, size: int = 512, crop: int = 448) -> np.ndarray:
    """DCTNet's 192 channels for ``path``: Resize, CenterCrop, Upscale(2), JPEG, read back."""
    cv2 = _cv2()
    if cv2 is not None:
        rgb = np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])
    else:
        rgb = load_rgb(path)
    h, w = rgb.shape[:2]
    if min(w, h) != size:  # cvfunctional.resize returns the image when it already fits
        if w < h:
            rgb = _resize(rgb, size, int(size * h / w))
        else:
            rgb = _resize(rgb, int(size * w / h), size)
    h, w = rgb.shape[:2]
    i, j = int(round((h - crop) * 0.5)), int(round((w - crop) * 0.5))  # noqa: RUF046
    img = rgb[i : i + crop, j : j + crop]
    y = _libjpeg_q100_420(img)[0]
    _, cb, cr = _libjpeg_q100_420(_resize(img, 2 * crop, 2 * crop))
    return np.concatenate([y, cb, cr])


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_matches_libjpeg_encoder(path: Path) -> None:
    got = encode_dctnet(path, "all", "resnet").astype(np.int64)
    ref = _official(path)
    assert got.shape == ref.shape == (192, 56, 56)
    diff = np.abs(got - ref)
    # Measured: identical on every coefficient of these images, with cv2.resize (4.10 and
    # 5.1) and with resize_linear. The bar is >= 99% exact and max |d| <= 1.
    assert (diff == 0).mean() >= 0.999, (diff == 0).mean()
    assert diff.max() <= 1


def test_other_crop_geometry_and_encode_image() -> None:
    path = IMAGES[2]
    got = encode_dctnet(path, "dctnet-24", "256:224")
    assert got.shape == (24, 28, 28)
    ref = _official(path, 256, 224)
    p = PRESETS["dctnet-24"]
    sel = np.concatenate([p.y, [64 + k for k in p.cb], [128 + k for k in p.cr]])
    assert (got == ref[sel]).mean() >= 0.999
    np.testing.assert_array_equal(encode_image(path, "dctnet-24", "dctnet", "256:224"), got)


def test_float_dct_is_not_enough() -> None:
    # Rounding the orthonormal float DCT instead of libjpeg's integer DCT: about 6% of the
    # coefficients differ by 1 (measured 5-7% on COCO) -- why fdct_islow exists.
    from freqdata.dct import block_dct

    planes = dctnet_planes(IMAGES[0])
    sel = list(range(64))
    exact = fdct_islow(planes[0], sel)
    approx = np.rint(block_dct(planes[0], sel, dtype=np.float64)).astype(np.int64)
    d = np.abs(approx - exact)
    assert d.max() == 1 and 0.01 < (d == 1).mean() < 0.15


def test_resize_linear_float_reference() -> None:
    # Bilinear with half-pixel centres, no antialias, borders clamped, in float64; the
    # 11-bit fixed point and OpenCV's truncations stay within 1 of it.
    rgb = load_rgb(IMAGES[0])[:97, :131]
    for w, h in [(262, 194), (60, 45), (131, 97), (500, 20)]:
        got = resize_linear(rgb, w, h).astype(np.float64)
        x = np.clip((np.arange(w) + 0.5) * 131 / w - 0.5, 0, 130)
        y = np.clip((np.arange(h) + 0.5) * 97 / h - 0.5, 0, 96)
        x0, y0 = np.minimum(np.floor(x).astype(int), 129), np.minimum(np.floor(y).astype(int), 95)
        fx, fy = (x - x0)[None, :, None], (y - y0)[:, None, None]
        a = rgb.astype(np.float64)
        top = a[y0][:, x0] * (1 - fx) + a[y0][:, x0 + 1] * fx
        bot = a[y0 + 1][:, x0] * (1 - fx) + a[y0 + 1][:, x0 + 1] * fx
        ref = top * (1 - fy) + bot * fy
        err = np.abs(got - ref)
        assert err.max() <= 1.0, (w, h, err.max())


def test_resize_linear_is_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for path in IMAGES[:3]:
        rgb = load_rgb(path)
        h, w = rgb.shape[:2]
        sizes = [(2 * w, 2 * h), (w // 2, h // 2), (w, h), (448, 448), (637, 431)]
        sizes += [tuple(int(v) for v in rng.integers(1, 900, 2)) for _ in range(4)]
        for tw, th in sizes:
            ref = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_LINEAR)
            np.testing.assert_array_equal(resize_linear(rgb, tw, th), ref, err_msg=str((tw, th)))
        gray = np.ascontiguousarray(rgb[..., 1])
        ref = cv2.resize(gray, (333, 222), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(resize_linear(gray, 333, 222), ref)


def test_downsample_h2v2_bias() -> None:
    # four 2x2 boxes summing to 2: (2 + 1) >> 2 = 0, (2 + 2) >> 2 = 1, alternating by column
    plane = np.array([[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(downsample_h2v2(plane), [[0, 1, 0, 1]])
    with pytest.raises(UsageError):
        downsample_h2v2(np.zeros((3, 4), np.uint8))


def test_named_statistics() -> None:
    mean, std = STATISTICS["dctnet"]
    assert mean.shape == std.shape == (192,) and (std > 0).all()
    # values as printed in DCTNet's classification/datasets/__init__.py
    assert (mean[0], mean[64], mean[128]) == (-88.397, -58.709, 32.116)
    assert (std[0], std[1], std[64], std[128], std[191]) == (
        259.96,
        2.7776,
        81.161,
        75.848,
        0.0096861,
    )
    p = PRESETS["dctnet-24"]
    names = [f"Y{k}" for k in p.y] + [f"Cb{k}" for k in p.cb] + [f"Cr{k}" for k in p.cr]
    m, s = named_statistics("dctnet", names)
    sel = np.concatenate([p.y, [64 + k for k in p.cb], [128 + k for k in p.cr]])
    np.testing.assert_array_equal(m, mean[sel])
    np.testing.assert_array_equal(s, std[sel])
    assert m[16] == -58.709 and s[20] == 75.848  # Cb0, Cr0 after the 16 luma channels
    with pytest.raises(UsageError, match="unknown statistics"):
        named_statistics("imagenet", names)
    with pytest.raises(UsageError, match="channel"):
        named_statistics("dctnet", ["Y64"])


def test_store_of_the_dctnet_path(tmp_path: Path) -> None:
    opts = EncodeOptions("dctnet-24", "dctnet", "resnet")
    summary = encode_images(str(IMAGES[0]), str(tmp_path / "s.zarr"), opts, workers=0)
    assert summary.encoded == 1 and summary.failed == 0, summary.errors
    cube, _ = open_store(str(tmp_path / "s.zarr"))[0]
    np.testing.assert_array_equal(cube, encode_dctnet(IMAGES[0], "dctnet-24", "resnet"))
    with pytest.raises(UsageError, match="crop geometry"):
        EncodeOptions("dctnet-24", "dctnet", "none").validate()


def test_damaged_jpeg_strict_and_lenient() -> None:
    # a real JPEG whose restart markers are misnumbered: libjpeg reports corrupt data
    data = renumber_restarts((ZOO / "pillow" / "flower2.jpg").read_bytes())
    with pytest.raises(ImageDecodeError, match="JPEG"):
        encode_dctnet(data, "dctnet-6")
    with pytest.warns(DamagedJpegWarning, match="despite damage"):
        cube = encode_image(data, "dctnet-6", "dctnet", "resnet", lenient=True)
    assert cube.shape == (6, 56, 56)


def test_options_refused() -> None:
    with pytest.raises(UsageError, match="crop"):
        encode_dctnet(IMAGES[0], "dctnet-6", "none")
    for kw in ({"chroma": "native"}, {"rng": np.random.default_rng(0)}):
        with pytest.raises(UsageError, match="dctnet"):
            encode_image(IMAGES[0], "dctnet-6", "dctnet", "resnet", **kw)
    with pytest.raises(UsageError, match="dctnet"):
        encode_image(IMAGES[0], "dctnet-6", "dctnet", "none")
