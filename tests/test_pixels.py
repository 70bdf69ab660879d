"""freqdata.pixels: decode → orientation → geometry → JFIF YCbCr planes, on real images.

References are built independently of the module: Pillow's full RGB decode (no draft),
Pillow bilinear resize to the expected size, numpy centre crop, and the float64 JFIF
equations below. Tolerances are the measured differences plus a small margin; each
assertion says where its number comes from.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import ANTS_BEES, COCO_VAL, ZOO
from PIL import Image, ImageOps, JpegImagePlugin

from freqdata.pixels import (
    GEOMETRIES,
    Geometry,
    ImageDecodeError,
    ImageTooLargeError,
    YCbCrImage,
    centre_offset,
    load_rgb,
    load_ycbcr,
    parse_geometry,
    random_resized_crop_params,
    resized_size,
    rgb_to_ycbcr,
)

COCO_640x480 = COCO_VAL / "000000018575.jpg"  # 4:4:4
COCO_640x427 = COCO_VAL / "000000092660.jpg"  # 4:4:4, 427 rows -> padded to 432
COCO_480x640 = COCO_VAL / "000000012280.jpg"  # 4:4:4, portrait
COCO_GRAY = COCO_VAL / "000000431848.jpg"  # 378x640 grayscale JPEG
ANTS_500x375 = ANTS_BEES / "train" / "ants" / "1286984635_5119e80de1.jpg"  # pads both axes
ANTS_GIF = ANTS_BEES / "train" / "ants" / "imageNotFound.gif"  # 300x300 palette GIF
ZOO_420 = ZOO / "pypi-wheels" / "grace_hopper.jpg"  # 512x600 4:2:0
ZOO_RETINA = ZOO / "pypi-wheels" / "retina.jpg"  # 1411x1411 4:2:0: resnet decodes at 1/2
HOPPER = ZOO / "pillow" / "hopper.jpg"  # 128x128 4:2:0

COCO_444 = [COCO_640x480, COCO_640x427, COCO_480x640]


@pytest.fixture(autouse=True)
def _need_data(data_dir: Path) -> None:
    """Every test here reads the real images; skip cleanly without them."""


def jfif_float(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float64 JFIF YCbCr, unrounded (the reference)."""
    r, g, b = (rgb[..., k].astype(np.float64) for k in range(3))
    return np.stack(
        [
            0.299 * r + 0.587 * g + 0.114 * b,
            128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
            128 + 0.5 * r - 0.418688 * g - 0.081312 * b,
        ]
    )


def reference(
    path: Path, resize: int | None = None, crop: int | None = None, dctnet: bool = False
) -> np.ndarray:
    """Independent pixel path: full RGB decode, bilinear resize, centre crop, float JFIF.

    ``dctnet``: the size and offsets as kaix90/DCTNet's ``cvfunctional.resize`` and
    ``center_crop`` write them (``int(size * h / w)``, ``int(round((h - th) * 0.5))``);
    otherwise freqdata's ``S:C`` rule (``round``, ``//``).
    """
    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    if resize is not None:
        w, h = im.size
        if dctnet:
            size = (resize, int(resize * h / w)) if w < h else (int(resize * w / h), resize)
        else:
            size = (resize, round(h * resize / w)) if w <= h else (round(w * resize / h), resize)
        im = im.resize(size, Image.Resampling.BILINEAR)
    a = np.asarray(im)
    if crop is not None:
        h, w = a.shape[:2]
        if dctnet:
            y0, x0 = round((h - crop) * 0.5), round((w - crop) * 0.5)
        else:
            y0, x0 = (h - crop) // 2, (w - crop) // 2
        a = a[y0 : y0 + crop, x0 : x0 + crop]
    return jfif_float(a)


def mean_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-channel mean |a - b| of two (3, H, W) arrays."""
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=(1, 2))


class FixedRng:
    """Stands in for np.random.Generator with known draws (duck-typed: uniform/integers/random).

    ``uniform`` returns the upper end (largest area, widest ratio, so a 640x480 image gets the
    full-height 4:3 crop on the first attempt), ``integers`` the lower end (left/top crop),
    ``random`` the given flip draw.
    """

    def __init__(self, flip_draw: float) -> None:
        self.flip_draw = flip_draw

    def uniform(self, low: float, high: float) -> float:
        return high

    def integers(self, low: int, high: int) -> int:
        return low

    def random(self) -> float:
        return self.flip_draw


# ----------------------------------------------------------------------------- geometry specs


def test_presets() -> None:
    assert parse_geometry("none") == Geometry(None, None, "none")
    assert parse_geometry("resnet") == Geometry(512, 448, "resnet", "dctnet")
    assert parse_geometry("mobilenet") == Geometry(1024, 896, "mobilenet", "dctnet")
    assert parse_geometry("256:224").rule == "round"
    assert parse_geometry("resnet").blocks == (56, 56)
    assert parse_geometry("mobilenet").blocks == (112, 112)
    assert parse_geometry("none").blocks is None
    assert set(GEOMETRIES) == {"none", "resnet", "mobilenet"}
    assert parse_geometry(" ResNet ") is GEOMETRIES["resnet"]


def test_custom_geometry() -> None:
    g = parse_geometry("256:224")
    assert g == Geometry(256, 224, "256:224")
    assert g.blocks == (28, 28)
    assert parse_geometry("224:224") == Geometry(224, 224, "224:224")
    assert parse_geometry(g) is g


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "resnet50",
        "224",
        "256:220",
        "200:224",
        "0:0",
        "-256:224",
        "256:-224",
        "a:b",
        "256x224",
        "1:2:3",
    ],
)
def test_bad_geometry_lists_choices(spec: str) -> None:
    with pytest.raises(ValueError, match=r"none, resnet .*mobilenet .*S:C"):
        parse_geometry(spec)


@pytest.mark.parametrize(
    ("resize", "crop"), [(None, 448), (100, 224), (512, 100), (0, None), (512, 0)]
)
def test_invalid_geometry_object(resize: int | None, crop: int | None) -> None:
    with pytest.raises(ValueError, match="geometry"):
        Geometry(resize, crop, "bad")


def test_resized_size() -> None:
    assert resized_size(640, 480, 512) == (683, 512)  # round(682.67)
    assert resized_size(480, 640, 512) == (512, 683)
    assert resized_size(500, 375, 512) == (683, 512)
    assert resized_size(300, 300, 512) == (512, 512)
    # DCTNet / torchvision: int(512 * 640 / 480) = int(682.67) = 682
    assert resized_size(640, 480, 512, "dctnet") == (682, 512)
    assert resized_size(480, 640, 512, "dctnet") == (512, 682)
    assert resized_size(640, 427, 512, "dctnet") == (767, 512)  # 767.4
    assert resized_size(300, 300, 512, "dctnet") == (512, 512)


@pytest.mark.parametrize(
    ("dim", "crop", "floor", "dctnet"),
    # (dim - crop) / 2: 159.5 -> 159 / 160 (half to even); 117.5 -> 117 / 118; 2.5 -> 2 / 2
    [(767, 448, 159, 160), (683, 448, 117, 118), (453, 448, 2, 2), (448, 448, 0, 0)],
)
def test_centre_offset(dim: int, crop: int, floor: int, dctnet: int) -> None:
    assert centre_offset(dim, crop) == floor
    assert centre_offset(dim, crop, "dctnet") == dctnet


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("path", "size", "sampling"),
    [
        (COCO_640x480, (640, 480), ((1, 1), (1, 1), (1, 1))),
        (COCO_640x427, (640, 427), ((1, 1), (1, 1), (1, 1))),
        (ANTS_500x375, (500, 375), ((1, 1), (1, 1), (1, 1))),
        (ZOO_420, (512, 600), ((2, 2), (1, 1), (1, 1))),
        (ZOO / "pillow" / "iptc.jpg", (640, 480), ((2, 1), (1, 1), (1, 1))),
    ],
)
@pytest.mark.parametrize("spec", ["none", "resnet", "mobilenet", "256:224"])
def test_shapes(path: Path, size: tuple[int, int], sampling: tuple, spec: str) -> None:
    g = parse_geometry(spec)
    out = load_ycbcr(path, spec)
    assert isinstance(out, YCbCrImage)
    if g.crop is None:
        expected = (3, -(-size[1] // 8) * 8, -(-size[0] // 8) * 8)
    else:
        expected = (3, g.crop, g.crop)
    assert out.planes.shape == expected
    assert out.planes.dtype == np.uint8
    assert out.planes.flags.c_contiguous
    assert out.sampling == sampling
    assert out.source_size == size
    assert out.flipped is False
    rand = load_ycbcr(path, spec, rng=np.random.default_rng(0))
    assert rand.planes.shape == expected


def test_resize_only_geometry_pads() -> None:
    out = load_ycbcr(COCO_640x427, Geometry(300, None, "resize-300"))
    # 640x427 -> (round(640 * 300 / 427), 300) = (450, 300) -> padded to 456 x 304
    assert out.planes.shape == (3, 304, 456)
    assert np.array_equal(out.planes[:, :, 450:], np.repeat(out.planes[:, :, 449:450], 6, axis=2))


# ----------------------------------------------------------------------------- "none" geometry


@pytest.mark.parametrize("path", [COCO_640x427, ANTS_500x375])
def test_none_pads_by_edge_replication(path: Path) -> None:
    out = load_ycbcr(path, "none").planes
    w, h = Image.open(path).size
    assert out.shape[1] > h or out.shape[2] > w
    # the unpadded part is libjpeg's own YCbCr output, untouched
    im = Image.open(path)
    im.draft("YCbCr", None)
    direct = np.asarray(im).transpose(2, 0, 1)
    assert np.array_equal(out[:, :h, :w], direct)
    # pad columns repeat the last column, pad rows repeat the last (padded) row
    for x in range(w, out.shape[2]):
        assert np.array_equal(out[:, :h, x], out[:, :h, w - 1])
    for y in range(h, out.shape[1]):
        assert np.array_equal(out[:, y], out[:, h - 1])


@pytest.mark.parametrize("path", [*COCO_444, ANTS_500x375])
def test_none_matches_float_jfif_of_rgb_decode(path: Path) -> None:
    ref = reference(path)
    rgb = np.asarray(Image.open(path).convert("RGB"))
    h, w = rgb.shape[:2]
    got = load_ycbcr(path, "none").planes[:, :h, :w].astype(np.float64)
    diff = np.abs(got - ref)
    # Where libjpeg's YCbCr -> RGB did not clip, RGB carries only its 0.5 rounding, and the
    # JFIF rows' absolute coefficients sum to 1, so |diff| <= 0.5 (measured 0.4915 max over
    # 60 COCO images).
    unclipped = ((rgb > 0) & (rgb < 255)).all(axis=-1)
    assert diff[:, unclipped].max() <= 0.5 + 1e-9
    # Out-of-gamut YCbCr clipped to RGB makes single samples differ by up to ~19; the
    # per-channel mean stays small: measured 0.139..0.165 on these images, <= 0.37 on 60.
    assert (diff.mean(axis=(1, 2)) <= 0.2).all(), diff.mean(axis=(1, 2))


# ----------------------------------------------------------------------------- resized geometries


@pytest.mark.parametrize("path", [*COCO_444, ANTS_500x375, ZOO_420])
def test_resnet_matches_independent_reference(path: Path) -> None:
    got = load_ycbcr(path, "resnet").planes
    err = mean_abs(got, reference(path, 512, 448, dctnet=True))
    # No draft here (shorter side < 1024). Measured 0.19..0.35 per channel on these images
    # (<= 0.52 over 60 COCO images): the reference rounds to 8 bits in RGB (decode) and again
    # after resizing in RGB, this path rounds once in YCbCr after resizing; PIL's float32
    # resize box moves ~2% of samples by 1. A geometry error (1-pixel shift, wrong crop
    # offset, wrong size) gives several units.
    assert (err <= 0.45).all(), err


def test_named_geometry_takes_dctnet_window() -> None:
    # 640x427: DCTNet resizes to 767x512 and crops at x = round(159.5) = 160; freqdata's S:C
    # rule would take x = 159. The 1-pixel shift of the window costs several units.
    got = load_ycbcr(COCO_640x427, "resnet").planes
    assert (mean_abs(got, reference(COCO_640x427, 512, 448, dctnet=True)) <= 0.45).all()
    assert mean_abs(got, reference(COCO_640x427, 512, 448))[0] > 2.0
    # the same size spelled S:C keeps freqdata's own rule
    got = load_ycbcr(COCO_640x427, "512:448").planes
    assert (mean_abs(got, reference(COCO_640x427, 512, 448)) <= 0.45).all()


def test_draft_scaled_decode_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    scales: list[float] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):  # type: ignore[no-untyped-def]
        width = self.size[0]
        res = original(self, mode, size)
        scales.append(width / res[1][2])
        return res

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)

    # retina: 1411x1411 -> 512: libjpeg decodes at 1/2 (706 >= 512), then bilinear 706 -> 512
    got = load_ycbcr(ZOO_RETINA, "resnet").planes
    assert scales[-1] == 2.0
    err = mean_abs(got, reference(ZOO_RETINA, 512, 448, dctnet=True))
    assert (err <= 0.45).all(), err  # measured (0.38, 0.29, 0.28): a smooth image

    # COCO 640x427 with 128:64: shorter side 427/128 = 3.3 -> 1/2 DCT scaling
    got = load_ycbcr(COCO_640x427, "128:64").planes
    assert scales[-1] == 2.0
    err = mean_abs(got, reference(COCO_640x427, 128, 64))
    # libjpeg's scaled IDCT is a sharper low-pass than a 3.3x bilinear (triangle) filter,
    # so detail differs: measured (1.35, 0.55, 0.40) here, Y <= 2.3 over 60 COCO images.
    assert err[0] <= 1.6 and (err[1:] <= 0.7).all(), err

    # no reduction when the target is more than half the source
    load_ycbcr(COCO_640x480, "resnet")
    load_ycbcr(ZOO_RETINA, "mobilenet")
    assert scales[-2:] == [1.0, 1.0]


def test_load_rgb() -> None:
    # libjpeg's RGB decode of the whole image, oriented: what cv2.imread gives (RGB order)
    for name in (COCO_640x427, ZOO / "pillow" / "hopper_orientation_6.jpg"):
        ref = np.asarray(ImageOps.exif_transpose(Image.open(name)).convert("RGB"))
        np.testing.assert_array_equal(load_rgb(name), ref, err_msg=str(name))
    gray = load_rgb(COCO_GRAY)
    assert gray.shape == (640, 378, 3)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    with pytest.raises(ImageDecodeError, match="bytes"):
        load_rgb(b"not an image")


# ----------------------------------------------------------------------------- orientation

_DIHEDRAL = [None, *Image.Transpose]


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize("spec", ["none", "resnet"])
def test_exif_orientation(orientation: int, spec: str) -> None:
    upright = load_ycbcr(HOPPER, spec).planes
    got = load_ycbcr(ZOO / "pillow" / f"hopper_orientation_{orientation}.jpg", spec).planes
    # the files are separate lossy encodings of the same picture: measured mean |diff|
    # 2.2..3.8 (Y) and ~2.0 (chroma); a wrong transpose gives 19..69.
    assert (mean_abs(got, upright) <= 5.0).all()
    # and the applied transform is the best of the 8 symmetries of the square
    errors = []
    for t in _DIHEDRAL:
        im = Image.fromarray(np.ascontiguousarray(got.transpose(1, 2, 0)), "YCbCr")
        cand = np.asarray(im if t is None else im.transpose(t)).transpose(2, 0, 1)
        errors.append(mean_abs(cand, upright).mean())
    assert int(np.argmin(errors)) == 0


def test_orientation_swaps_source_size() -> None:
    path = ZOO / "pillow" / "orientation_rectangle.jpg"  # stored 2x1, orientation 8
    out = load_ycbcr(path, "none")
    assert out.source_size == (1, 2)
    ref = reference(path)  # exif_transpose'd RGB, 1 wide, 2 high
    assert ref.shape == (3, 2, 1)
    assert np.abs(out.planes[:, :2, :1] - ref).max() <= 3  # tiny 4:2:0 image, clipped colours


def test_invalid_orientation_is_ignored() -> None:
    im = Image.open(COCO_640x480)
    exif = Image.Exif()
    exif[0x0112] = 9
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    out = load_ycbcr(buf.getvalue(), "none")
    assert out.source_size == (640, 480)


# ----------------------------------------------------------------------------- randomness


def test_rng_determinism() -> None:
    a = load_ycbcr(COCO_640x480, "resnet", rng=np.random.default_rng(7))
    b = load_ycbcr(COCO_640x480, "resnet", rng=np.random.default_rng(7))
    assert np.array_equal(a.planes, b.planes) and a.flipped == b.flipped
    others = [load_ycbcr(COCO_640x480, "resnet", rng=np.random.default_rng(s)) for s in range(8)]
    assert sum(not np.array_equal(a.planes, o.planes) for o in others) >= 7
    assert {o.flipped for o in others} == {True, False}


def test_random_flip_really_flips() -> None:
    plain = load_ycbcr(COCO_640x480, "resnet", rng=FixedRng(flip_draw=0.9))
    flipped = load_ycbcr(COCO_640x480, "resnet", rng=FixedRng(flip_draw=0.1))
    assert not plain.flipped and flipped.flipped
    assert np.array_equal(flipped.planes, plain.planes[:, :, ::-1])


def test_none_with_rng_only_flips() -> None:
    base = load_ycbcr(COCO_640x427, "none").planes
    for seed in range(6):
        out = load_ycbcr(COCO_640x427, "none", rng=np.random.default_rng(seed))
        assert out.planes.shape == base.shape
        h = 427  # flip first, then pad rows 427..431
        expected = base[:, :h, ::-1] if out.flipped else base[:, :h]
        assert np.array_equal(out.planes[:, :h], expected)


def test_random_resized_crop_pixels_match_reference() -> None:
    # FixedRng: the first attempt gives the full-height 4:3 crop of 640x480 at the left edge
    top, left, h, w = random_resized_crop_params(640, 480, FixedRng(flip_draw=0.9))
    assert (top, left, h, w) == (0, 0, 480, 640)
    rgb = Image.open(COCO_640x480).convert("RGB").crop((left, top, left + w, top + h))
    for spec, size, tol in [("resnet", 448, (0.45, 0.45)), ("256:224", 224, (1.5, 0.7))]:
        out = load_ycbcr(COCO_640x480, spec, rng=FixedRng(flip_draw=0.9)).planes
        ref = jfif_float(np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR)))
        err = mean_abs(out, ref)
        # 448: no draft, measured (0.34, 0.36, 0.36); 224: 2.1x reduction, so libjpeg decodes at 1/2
        # first (a different low-pass than a 2.1-2.9x bilinear), measured (1.18, 0.55, 0.48)
        assert err[0] <= tol[0] and (err[1:] <= tol[1]).all(), (spec, err)


def test_random_resized_crop_params() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        top, left, h, w = random_resized_crop_params(500, 375, rng)
        assert 0 <= top and top + h <= 375 and 0 <= left and left + w <= 500
        assert 0.08 * 500 * 375 * 0.97 <= w * h <= 500 * 375
    # 10 failed attempts -> centred fallback clamped to ratio 3/4 (torchvision)
    assert random_resized_crop_params(10, 1000, FixedRng(0.0)) == ((1000 - 13) // 2, 0, 13, 10)


# ----------------------------------------------------------------------------- other sources


def test_grayscale_jpeg() -> None:
    out = load_ycbcr(COCO_GRAY, "none")
    assert out.sampling == ((1, 1),)
    assert out.planes.shape == (3, 640, 384)
    assert (out.planes[1:] == 128).all()
    gray = np.asarray(Image.open(COCO_GRAY))
    assert np.array_equal(out.planes[0, :640, :378], gray)
    res = load_ycbcr(COCO_GRAY, "resnet")
    assert (res.planes[1:] == 128).all()


def test_gif_takes_the_rgb_route() -> None:
    out = load_ycbcr(ANTS_GIF, "none")
    assert out.sampling == ((1, 1), (1, 1), (1, 1))
    assert out.planes.shape == (3, 304, 304)
    ref = jfif_float(np.asarray(Image.open(ANTS_GIF).convert("RGB")))
    # libjpeg's 16-bit fixed-point JFIF conversion: within 0.501 of the float formula over
    # all 2**24 colours (its constants are the float ones to 5 digits)
    assert np.abs(out.planes[:, :300, :300] - ref).max() <= 0.502
    assert load_ycbcr(ANTS_GIF, "resnet").planes.shape == (3, 448, 448)


def test_cmyk_jpeg() -> None:
    path = ZOO / "pillow" / "pil_sample_cmyk.jpg"
    out = load_ycbcr(path, "none")
    assert out.sampling == ((1, 1), (1, 1), (1, 1))
    assert out.planes.shape == (3, 104, 104)
    ref = jfif_float(np.asarray(Image.open(path).convert("RGB")))
    assert np.abs(out.planes[:, :100, :100] - ref).max() <= 0.502


def test_rgb_coded_jpeg() -> None:
    # Adobe transform 0 with components R, G, B: libjpeg cannot output YCbCr from it
    buf = io.BytesIO()
    Image.open(HOPPER).convert("RGB").save(buf, "JPEG", keep_rgb=True, quality=95)
    out = load_ycbcr(buf.getvalue(), "none")
    assert out.sampling == ((1, 1), (1, 1), (1, 1))
    ref = jfif_float(np.asarray(Image.open(buf).convert("RGB")))
    assert np.abs(out.planes - ref).max() <= 0.502


def test_rgb_to_ycbcr_matches_float_formula() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    rgb[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                  [255, 255, 0], [0, 255, 255], [255, 0, 255]]  # fmt: skip
    diff = np.abs(rgb_to_ycbcr(rgb) - jfif_float(rgb))
    assert diff.max() <= 0.502
    assert abs(diff.mean() - 0.25) < 0.01  # unbiased rounding (PIL's convert truncates: 0.47)


def test_png_rgba_and_16bit_gray() -> None:
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (30, 20, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    out = load_ycbcr(buf.getvalue(), "none")
    assert out.planes.shape == (3, 32, 24) and out.sampling == ((1, 1), (1, 1), (1, 1))
    assert (
        np.abs(out.planes[:, :30, :20] - jfif_float(rgba[..., :3])).max() <= 0.502
    )  # alpha dropped
    gray16 = (np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) * 13).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(gray16).save(buf, "PNG")
    out = load_ycbcr(buf.getvalue(), "none")
    assert out.sampling == ((1, 1),)
    assert np.array_equal(out.planes[0], gray16 >> 8) and (out.planes[1:] == 128).all()


def test_other_formats_refused() -> None:
    buf = io.BytesIO()
    Image.open(HOPPER).save(buf, "PCX")
    with pytest.raises(ImageDecodeError, match=r"not a recognised image format .*JPEG"):
        load_ycbcr(buf.getvalue())


def test_mpo_first_frame() -> None:
    out = load_ycbcr(ZOO / "pillow" / "frozenpond.mpo", "resnet")
    assert out.planes.shape == (3, 448, 448) and out.sampling == ((2, 1), (1, 1), (1, 1))


def test_sources_path_str_bytes_agree() -> None:
    a = load_ycbcr(ANTS_500x375, "resnet").planes
    b = load_ycbcr(str(ANTS_500x375), "resnet").planes
    c = load_ycbcr(ANTS_500x375.read_bytes(), "resnet").planes
    assert np.array_equal(a, b) and np.array_equal(a, c)


# ----------------------------------------------------------------------------- hostile inputs


def test_max_pixels_guard() -> None:
    assert load_ycbcr(HOPPER, max_pixels=128 * 128).planes.shape == (3, 128, 128)
    with pytest.raises(ImageTooLargeError, match=r"128x128 = 16384 pixels .*max_pixels=16383"):
        load_ycbcr(HOPPER, max_pixels=128 * 128 - 1)
    # checked from the header, before decoding: this file has no entropy-coded data at all
    with pytest.raises(ImageTooLargeError, match="1512x2688"):
        load_ycbcr(ZOO / "pillow" / "ultrahdr.jpg", "resnet", max_pixels=1_000_000)
    assert issubclass(ImageTooLargeError, ValueError)


@pytest.mark.parametrize("name", ["truncated_jpeg.jpg", "ultrahdr.jpg"])
def test_truncated_jpeg_raises(name: str) -> None:
    path = ZOO / "pillow" / name
    with pytest.raises(ImageDecodeError, match="truncated") as info:
        load_ycbcr(path, "resnet")
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_cut_jpeg_bytes_raise() -> None:
    data = COCO_640x480.read_bytes()
    with pytest.raises(ImageDecodeError, match=r"<\d+ bytes>: .*truncated"):
        load_ycbcr(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty input"),
        (b"this is not an image at all" * 10, "not a recognised image"),
        (b"\xff\xd8\xff\xe0" + bytes(200), "JPEG"),
    ],
)
def test_non_image_bytes_raise(data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError, match=reason):
        load_ycbcr(data)


def test_zero_byte_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty input") as info:
        load_ycbcr(path, "resnet")
    assert info.value.source == str(path)


def test_unsupported_12bit_jpeg_raises() -> None:
    with pytest.raises(ImageDecodeError, match="JPEG that Pillow cannot open"):
        load_ycbcr(ZOO / "libjpeg-turbo" / "monkey12.jpg")


def test_missing_file_is_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_ycbcr(tmp_path / "nope.jpg")


def test_decode_error_pickles() -> None:
    err = ImageDecodeError("a.jpg", "image file is truncated")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ImageDecodeError and str(back) == "a.jpg: image file is truncated"
    big = pickle.loads(pickle.dumps(ImageTooLargeError("b.jpg", "too big")))
    assert type(big) is ImageTooLargeError and big.reason == "too big"
