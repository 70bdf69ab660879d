"""freqdata.jpeg.read_coefficients: the JPEG coefficient reader (no inverse DCT).

The independent reference is the `jpeglib` package (its own bundled IJG libjpeg 9f build, not
the system libjpeg-turbo our extension links). Its blocks are ``(Hb, Wb, 8, 8)`` indexed
``[..., v, u]`` (row = vertical frequency); that is checked here independently too, by
inverse-DCT'ing our blocks and comparing with Pillow's decode, where the transposed reading is
far off. So a transposition bug fails both ways.

The extension has two entropy decoders: its own for clean single-scan sequential Huffman data
("fast") and libjpeg's for everything else. ``_jpegcoef.read(..., fast=False)`` forces
libjpeg's; the tests check that both give identical results, on real and on damaged files.
"""

from __future__ import annotations

import json
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import ANTS_BEES, COCO_VAL, ZOO

from freqdata import _jpegcoef
from freqdata.jpeg import JpegCoefficients, JpegError, UnsupportedJpegError, read_coefficients

jpeglib = pytest.importorskip("jpeglib")

REF_VERSION = "9f"  # jpeglib's IJG libjpeg 9f: arithmetic coding, 16-bit tables, restarts

ANT_420 = "train/ants/175998972.jpg"
ANT_422 = (
    "val/ants/ants-devouring-remains-of-large-dead-insect-on-red-tile-in-Stellenbosch-"
    "South-Africa-closeup-1-DHD.jpg"
)
ANT_440 = "train/ants/Nepenthes_rafflesiana_ant.jpg"
ANT_PROGRESSIVE = "train/ants/ant photos.jpg"
COCO_GRAY = "000000431848.jpg"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not found: {path}")
    return path


def _coco(n: int) -> list[Path]:
    files = sorted(COCO_VAL.glob("*.jpg"))[:n] if COCO_VAL.is_dir() else []
    if not files:
        pytest.skip(f"COCO val images not found in {COCO_VAL}")
    return files


def _manifest() -> dict[str, dict]:
    path = ZOO / "MANIFEST.json"
    return json.loads(path.read_text()) if path.exists() else {}


MANIFEST = _manifest()


def _reference(path: Path | str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """jpeglib's quantized blocks per component (Hb, Wb, 8, 8) and each one's quant table."""
    with jpeglib.version(REF_VERSION):
        im = jpeglib.read_dct(str(path))
        im.load()  # jpeglib reads lazily: do it while the version is selected
    comps = [im.Y] if im.Cb is None else [im.Y, im.Cb, im.Cr]
    tables = [im.qt[im.quant_tbl_no[i]] for i in range(len(comps))]
    return comps, tables


def _assert_matches_reference(c: JpegCoefficients, path: Path | str) -> None:
    comps, tables = _reference(path)
    assert len(c.planes) == len(comps)
    for i, (plane, ref, qt) in enumerate(zip(c.planes, comps, tables, strict=True)):
        assert plane.dtype == np.int16 and plane.flags.c_contiguous
        assert plane.shape == (ref.shape[0], ref.shape[1], 64), f"component {i}"
        # natural order k = 8*v + u: flatten jpeglib's [..., v, u] row-major
        expected = np.clip(ref.astype(np.int64) * qt.astype(np.int64), -32768, 32767)
        np.testing.assert_array_equal(plane, expected.reshape(plane.shape), f"component {i}")
        np.testing.assert_array_equal(c.quant_tables[i], qt.reshape(64))
        assert c.quant_tables[i].dtype == np.uint16 and c.quant_tables[i].shape == (64,)


def _ceil_div(a: int, b: int) -> int:
    return (a + b - 1) // b


def _both_decoders(data: bytes, strict: bool = True, max_pixels: int = 4_000_000):
    """The raw results with the fast decoder and with libjpeg's: (result or error) each."""
    out = []
    for fast in (True, False):
        try:
            out.append(_jpegcoef.read(data, max_pixels, strict, fast))
        except _jpegcoef.Failure as e:
            out.append(("error", *e.args))
    return out


def _assert_same(a: tuple, b: tuple) -> None:
    if a[0] == "error" or b[0] == "error":
        assert a == b
        return
    assert a[:2] == b[:2] and a[4:10] == b[4:10]
    for x, y in zip(a[2] + a[3], b[2] + b[3], strict=True):
        np.testing.assert_array_equal(x, y)


def _expected_block_shapes(width: int, height: int, sampling) -> list[tuple[int, int]]:
    """libjpeg's height_in_blocks x width_in_blocks per component."""
    hmax = max(h for h, _ in sampling)
    vmax = max(v for _, v in sampling)
    return [
        (_ceil_div(_ceil_div(height * v, vmax), 8), _ceil_div(_ceil_div(width * h, hmax), 8))
        for h, v in sampling
    ]


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment; an SOS segment includes its entropy data."""
    out, i = [], 2
    while i + 4 <= len(data):
        assert data[i] == 0xFF, f"marker expected at {i}"
        marker = data[i + 1]
        if marker == 0xD9:
            out.append((marker, i, i + 2))
            break
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        end = i + 2 + length
        if marker == 0xDA:  # skip the entropy-coded data to the next real marker
            while end + 1 < len(data) and not (
                data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))
            ):
                end += 1
        out.append((marker, i, end))
        i = end
    return out


def _sof_offset(data: bytes) -> int:
    for marker, start, _ in _segments(data):
        if marker in (0xC0, 0xC1, 0xC2, 0xC9, 0xCA):
            return start
    raise AssertionError("no SOF")


# ---------------------------------------------------------------------------------------------
# real files: exact agreement with the reference


def test_coco_444_matches_reference(data_dir):
    for path in _coco(4):
        c = read_coefficients(path)
        assert c.colorspace == "ycbcr"
        assert c.sampling == ((1, 1), (1, 1), (1, 1))
        assert not c.progressive and not c.arithmetic
        _assert_matches_reference(c, path)


def test_coco_grayscale(data_dir):
    path = _need(COCO_VAL / COCO_GRAY)
    c = read_coefficients(path)
    assert c.colorspace == "gray" and len(c.planes) == 1 and c.sampling == ((1, 1),)
    assert c.planes[0].shape == (-(-c.height // 8), -(-c.width // 8), 64)
    _assert_matches_reference(c, path)


@pytest.mark.parametrize(
    ("name", "sampling", "progressive"),
    [
        (ANT_420, ((2, 2), (1, 1), (1, 1)), False),
        (ANT_422, ((2, 1), (1, 1), (1, 1)), False),
        (ANT_440, ((1, 2), (1, 1), (1, 1)), False),
        (ANT_PROGRESSIVE, None, True),
    ],
)
def test_ants_samplings_match_reference(data_dir, name, sampling, progressive):
    path = _need(ANTS_BEES / name)
    c = read_coefficients(path)
    if sampling is not None:
        assert c.sampling == sampling
    assert c.progressive is progressive
    assert [p.shape[:2] for p in c.planes] == _expected_block_shapes(c.width, c.height, c.sampling)
    assert c.block_shapes == tuple(p.shape[:2] for p in c.planes)
    _assert_matches_reference(c, path)


def test_block_grid_is_not_mcu_padded(data_dir):
    # 227x149 at 4:2:0: Y 19x29 blocks, chroma 10x15 (libjpeg allocates 20x30 for Y)
    c = read_coefficients(_need(ZOO / "libjpeg-turbo/testorig.jpg"))
    assert (c.width, c.height) == (227, 149)
    assert [p.shape for p in c.planes] == [(19, 29, 64), (10, 15, 64), (10, 15, 64)]


def test_decoder_choice_and_agreement(data_dir):
    cases = {
        ZOO / "pillow/hopper.jpg": "fast",  # baseline 4:2:0
        ZOO / "pillow/pil_sample_rgb.jpg": "fast",  # restart markers
        ZOO / "pillow/hopper_gray.jpg": "fast",
        ZOO / "pillow/hopper_16bit_qtables.jpg": "fast",  # SOF1
        ZOO / "pillow/app13.jpg": "fast",  # smaller than one MCU, restarts
        ZOO / "pillow/iptc.jpg": "fast",  # 4:2:2
        ANTS_BEES / ANT_440: "fast",
        ZOO / "pillow/icc_profile_big.jpg": "libjpeg",  # progressive
        ZOO / "libjpeg-turbo/testimgari.jpg": "libjpeg",  # arithmetic
        **{p: "fast" for p in _coco(3)},
    }
    for path, decoder in cases.items():
        fast, slow = _both_decoders(_need(path).read_bytes(), max_pixels=10**9)
        assert fast[10] == decoder, path
        assert slow[10] == "libjpeg"
        _assert_same(fast, slow)


def test_odd_streams_fall_back_to_libjpeg():
    data = _need(ZOO / "libjpeg-turbo/testorig.jpg").read_bytes()
    assert data.endswith(b"\xff\xd9")
    ref = _jpegcoef.read(data, 10**9, True)
    assert ref[10] == "fast"
    # a comment segment between the scan and EOI: valid, libjpeg reads it
    com = data[:-2] + b"\xff\xfe\x00\x05abc" + data[-2:]
    fast, slow = _both_decoders(com)
    assert fast[10] == "libjpeg" and fast[9] == []
    _assert_same(fast, slow)
    _assert_same((*fast[:10], "x"), (*ref[:10], "x"))
    # fill bytes before EOI are fine and stay on the fast path
    fill = data[:-2] + b"\xff\xff\xff" + data[-2:]
    assert _jpegcoef.read(fill, 10**9, True)[10] == "fast"
    # junk bytes before EOI: the fast decoder leaves them to libjpeg, which ignores up to 6
    # (what it had prefetched) and warns about more
    for n in (1, 6, 7, 16):
        junk = data[:-2] + bytes(range(1, n + 1)) + data[-2:]
        fast, slow = _both_decoders(junk)
        assert fast[0] == "error" or fast[10] == "libjpeg"
        _assert_same(fast, slow)
    with pytest.raises(JpegError, match="extraneous bytes before marker 0xd9"):
        read_coefficients(junk)
    lenient = read_coefficients(junk, strict=False)
    assert lenient.warnings and all(
        np.array_equal(a, b) for a, b in zip(lenient.planes, ref[2], strict=True)
    )
    # restart markers out of sequence
    rst = bytearray(_need(ZOO / "pillow/pil_sample_rgb.jpg").read_bytes())
    sos = next(s for m, s, _ in _segments(bytes(rst)) if m == 0xDA)
    i = rst.index(b"\xff\xd1", sos)
    rst[i + 1] = 0xD5
    for strict in (True, False):
        fast, slow = _both_decoders(bytes(rst), strict)
        _assert_same(fast, slow)
    with pytest.raises(JpegError, match="damaged JPEG"):
        read_coefficients(bytes(rst))


def test_multiscan_sequential_matches_reference(tmp_path):
    # a sequential (SOF0) JPEG with one scan per component: each component's rows arrive in
    # their own scan, the case the reader's streaming mode must get right
    from jpeglib._scan import Scan

    rng = np.random.default_rng(1)
    x = (rng.random((45, 61, 3)) * 255).astype(np.uint8)
    scans = [
        Scan(np.array([i]), np.array([min(i, 1)]), np.array([min(i, 1)]), 0, 63, 0, 0)
        for i in range(3)
    ]
    path = tmp_path / "multiscan.jpg"
    with jpeglib.version("turbo210"):
        jpeglib.from_spatial(x, scans=scans).write_spatial(str(path), qt=90)
    data = path.read_bytes()
    assert data.count(b"\xff\xda") == 3 and b"\xff\xc0" in data
    c = read_coefficients(data)
    assert not c.progressive
    _assert_matches_reference(c, path)
    fast, slow = _both_decoders(data)
    assert fast[10] == "libjpeg"  # more than one scan: not for the fast decoder
    _assert_same(fast, slow)
    # cut inside the second scan: with strict=False the missing components are zero
    cut = [s for m, s, _ in _segments(data) if m == 0xDA][1] + 40
    d = read_coefficients(data[:cut], strict=False)
    assert d.warnings and np.array_equal(d.planes[0], c.planes[0])
    assert not d.planes[2].any()
    with pytest.raises(JpegError, match="truncated"):
        read_coefficients(data[:cut])


def test_dequantization_saturates_to_int16(tmp_path):
    # 16-bit quant tables patched so that products overflow int16: the luma table stays
    # <= 32767 (the SIMD path), the chroma table gets 65535 (the scalar path)
    data = bytearray(_need(ZOO / "pillow/hopper_16bit_qtables.jpg").read_bytes())
    dqts = [s for m, s, _ in _segments(bytes(data)) if m == 0xDB]
    assert [data[s + 4] for s in dqts] == [0x10, 0x11]  # 16-bit tables 0 and 1
    data[dqts[0] + 5 : dqts[0] + 7] = struct.pack(">H", 30000)  # table 0, DC step
    data[dqts[1] + 5 : dqts[1] + 7] = struct.pack(">H", 65535)  # table 1, DC step
    path = tmp_path / "big_steps.jpg"
    path.write_bytes(bytes(data))
    c = read_coefficients(path)
    assert c.quant_tables[0][0] == 30000 and c.quant_tables[1][0] == 65535
    for plane in c.planes:
        dc = plane[..., 0]
        assert ((dc == 32767) | (dc == -32768)).any()
    _assert_matches_reference(c, path)


# ---------------------------------------------------------------------------------------------
# independent checks of the conventions (no jpeglib)


def _pil_ycbcr(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.draft("YCbCr", im.size)  # libjpeg's own YCbCr output: no colour conversion
        assert im.mode == "YCbCr"
        return np.asarray(im).astype(np.float64)


def test_dc_is_8_times_block_mean_minus_128(data_dir):
    path = _coco(1)[0]
    c = read_coefficients(path)
    assert c.sampling == ((1, 1), (1, 1), (1, 1))
    ycc = _pil_ycbcr(path)
    hb, wb = ycc.shape[0] // 8, ycc.shape[1] // 8
    for ci, tol in ((0, 2.0), (1, 4.0), (2, 4.0)):
        means = ycc[: hb * 8, : wb * 8, ci].reshape(hb, 8, wb, 8).mean(axis=(1, 3))
        dc = c.planes[ci][:hb, :wb, 0].astype(np.float64)
        diff = np.abs(8 * (means - 128) - dc)
        q0 = float(c.quant_tables[ci][0])
        assert diff.max() <= q0 + tol, (ci, diff.max(), q0)
        assert diff.mean() < 1.0, (ci, diff.mean())


@pytest.mark.parametrize("which", ["coco", ANT_420])
def test_inverse_dct_reproduces_pillow_luma(data_dir, which):
    from scipy.fft import idctn

    path = _coco(1)[0] if which == "coco" else _need(ANTS_BEES / which)
    c = read_coefficients(path)
    y = _pil_ycbcr(path)[..., 0]
    hb, wb = y.shape[0] // 8, y.shape[1] // 8
    blocks = c.planes[0].reshape(*c.planes[0].shape[:2], 8, 8).astype(np.float64)

    def err(b: np.ndarray) -> float:
        pix = np.clip(idctn(b, axes=(2, 3), norm="ortho") + 128, 0, 255)
        pix = pix.transpose(0, 2, 1, 3).reshape(b.shape[0] * 8, b.shape[1] * 8)
        return float(np.abs(pix[: hb * 8, : wb * 8] - y[: hb * 8, : wb * 8]).mean())

    # k = 8*v + u (row = vertical frequency) reproduces libjpeg's pixels to rounding ...
    assert err(blocks) < 0.5
    # ... and the transposed reading does not
    assert err(blocks.transpose(0, 1, 3, 2)) > 3.0


# ---------------------------------------------------------------------------------------------
# the zoo: every file reads and matches, or fails for the right reason


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_zoo(name):
    info = MANIFEST[name]
    path = ZOO / name
    if info["precision"] != 8:
        with pytest.raises(UnsupportedJpegError, match=r"12-bit JPEG .*not supported"):
            read_coefficients(path)
        return
    if info["components"] == 4:
        with pytest.raises(UnsupportedJpegError, match=r"CMYK/YCCK JPEG \(4 components\)"):
            read_coefficients(path)
        return
    if not info["ends_with_eoi"]:
        with pytest.raises(JpegError, match="truncated JPEG: premature end of data") as e:
            read_coefficients(path)
        assert not isinstance(e.value, UnsupportedJpegError)
        assert str(path) in str(e.value)
        return
    c = read_coefficients(path)
    assert (c.width, c.height) == (info["width"], info["height"])
    assert len(c.planes) == info["components"]
    assert c.colorspace == ("gray" if info["components"] == 1 else "ycbcr")
    expected_sampling = [tuple(s) for s in info["sampling_factors"]]
    if info["components"] == 1:
        expected_sampling = [(1, 1)]
    assert list(c.sampling) == expected_sampling
    assert c.progressive is (info["sof"] == "progressive")
    assert c.arithmetic is info["sof"].startswith("arith")
    assert c.orientation == (info["exif_orientation"] or 1)
    assert c.warnings == ()
    assert [p.shape[:2] for p in c.planes] == _expected_block_shapes(c.width, c.height, c.sampling)
    _assert_matches_reference(c, path)


def test_zoo_manifest_covers_the_special_cases():
    if not MANIFEST:
        pytest.skip("jpeg zoo not found")
    sofs = {i["sof"] for i in MANIFEST.values()}
    assert {"baseline", "progressive", "arith-seq", "extended"} <= sofs
    assert any(i["restart_interval"] for i in MANIFEST.values())
    assert any(16 in i["quant_table_bits"] for i in MANIFEST.values())


def test_zoo_details():
    if not MANIFEST:
        pytest.skip("jpeg zoo not found")
    tiny = read_coefficients(ZOO / "pillow/app13.jpg")  # 4x4, smaller than one MCU
    assert [p.shape for p in tiny.planes] == [(1, 1, 64)] * 3
    rect = read_coefficients(ZOO / "pillow/orientation_rectangle.jpg")  # 2x1
    assert (rect.width, rect.height, rect.orientation) == (2, 1, 8)
    assert [p.shape for p in rect.planes] == [(1, 1, 64)] * 3
    q16 = read_coefficients(ZOO / "pillow/hopper_16bit_qtables.jpg")
    assert q16.quant_tables[0].dtype == np.uint16
    prog = read_coefficients(ZOO / "pillow/icc_profile_big.jpg")
    assert prog.progressive and prog.sampling == ((1, 1), (1, 1), (1, 1))
    assert read_coefficients(ZOO / "libjpeg-turbo/testimgari.jpg").arithmetic
    # the arithmetic-coded and Huffman-coded versions of the same image share quant tables
    # and so have the same coefficients
    ari = read_coefficients(ZOO / "libjpeg-turbo/testimgari.jpg")
    huf = read_coefficients(ZOO / "libjpeg-turbo/testimgint.jpg")
    for a, h in zip(ari.planes, huf.planes, strict=True):
        np.testing.assert_array_equal(a, h)
    for k in range(2, 9):
        assert read_coefficients(ZOO / f"pillow/hopper_orientation_{k}.jpg").orientation == k


def test_truncated_files_with_strict_false():
    if not MANIFEST:
        pytest.skip("jpeg zoo not found")
    c = read_coefficients(ZOO / "pillow/truncated_jpeg.jpg", strict=False)
    assert "Premature end of JPEG file" in c.warnings
    assert c.progressive and c.planes[0].shape == (13, 13, 64)
    assert c.planes[0].any()
    # cut right after the SOS header: shapes from the header, and no data (libjpeg decodes
    # the first MCU from stuffed zero bits, then gives up: all other blocks are zero)
    u = read_coefficients(ZOO / "pillow/ultrahdr.jpg", strict=False)
    assert (u.width, u.height) == (1512, 2688) and u.sampling == ((2, 2), (1, 1), (1, 1))
    assert "Premature end of JPEG file" in u.warnings
    assert [p.shape for p in u.planes] == [(336, 189, 64), (168, 95, 64), (168, 95, 64)]
    y = u.planes[0].copy()
    y[:2, :2] = 0
    assert not y.any() and not u.planes[1][1:].any() and not u.planes[1][:, 1:].any()


# ---------------------------------------------------------------------------------------------
# inputs, metadata, threads


def test_input_kinds_agree(data_dir):
    path = _need(ZOO / "pillow/hopper.jpg")
    data = path.read_bytes()
    ref = read_coefficients(path)
    for src in (str(path), data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        c = read_coefficients(src)
        assert all(np.array_equal(a, b) for a, b in zip(c.planes, ref.planes, strict=True))
        assert c.sampling == ref.sampling and c.orientation == ref.orientation


def test_threads_give_identical_results(data_dir):
    files = _coco(6)
    serial = [read_coefficients(f) for f in files]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(read_coefficients, files * 2))
    for i, c in enumerate(parallel):
        for a, b in zip(c.planes, serial[i % len(files)].planes, strict=True):
            np.testing.assert_array_equal(a, b)


def test_exif_orientation_junk_never_raises():
    from freqdata.orientation import orientation as _exif_orientation

    assert _exif_orientation(None) == 1
    assert _exif_orientation(b"") == 1
    assert _exif_orientation(b"II*\x00\xff\xff\xff\xff") == 1
    good = b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0)
    assert _exif_orientation(good) == 6
    assert _exif_orientation(good[:-4]) == 1  # entry cut short
    bad_value = good[:-4] + struct.pack(">HH", 9, 0)
    assert _exif_orientation(bad_value) == 1
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 40))
        junk = bytearray(good + rng.bytes(n))
        junk[int(rng.integers(0, len(junk)))] ^= 1 << int(rng.integers(0, 8))
        assert 1 <= _exif_orientation(bytes(junk)) <= 8


# ---------------------------------------------------------------------------------------------
# hostile and broken inputs: only JpegError, never a crash


def test_not_jpeg_inputs(data_dir):
    with pytest.raises(JpegError, match=r"not a JPEG file \(empty input: 0 bytes\)"):
        read_coefficients(b"")
    with pytest.raises(JpegError, match=r"not a JPEG file \(starts with b'not a jp"):
        read_coefficients(b"not a jpeg")
    with pytest.raises(JpegError, match=r"not a JPEG file \(starts with b'\\xff'\)"):
        read_coefficients(b"\xff")
    gif = _need(ANTS_BEES / "train/ants/imageNotFound.gif")
    with pytest.raises(JpegError, match=r"imageNotFound\.gif'.*looks like a GIF.*b'GIF89a") as e:
        read_coefficients(gif)
    assert not isinstance(e.value, UnsupportedJpegError)
    assert isinstance(e.value, ValueError)
    # SOI and nothing else / SOI then garbage
    for data in (b"\xff\xd8", b"\xff\xd8\xff", b"\xff\xd8" + b"\x00" * 100):
        with pytest.raises(JpegError):
            read_coefficients(data)
    with pytest.raises(FileNotFoundError):
        read_coefficients(ZOO / "no-such-file.jpg")


def test_truncated_at_many_offsets():
    path = _need(ZOO / "libjpeg-turbo/testorig.jpg")
    data = path.read_bytes()
    full = read_coefficients(data)
    offsets = sorted({*range(0, 400, 7), *np.linspace(400, len(data) - 1, 60).astype(int)})
    for n in offsets:
        _assert_same(*_both_decoders(data[:n], strict=False))
        with pytest.raises(JpegError) as e:
            read_coefficients(data[:n])
        assert not isinstance(e.value, UnsupportedJpegError)
        if n > _sof_offset(data) + 300:  # past the headers: it is the data that ran out
            assert "truncated JPEG" in str(e.value), (n, str(e.value))
        try:
            c = read_coefficients(data[:n], strict=False)
        except JpegError:
            continue
        assert [p.shape for p in c.planes] == [p.shape for p in full.planes]
    # progressive: every cut fails too
    prog = _need(ZOO / "pillow/app13-multiple.jpg").read_bytes()
    for n in np.linspace(10, len(prog) - 1, 25).astype(int):
        with pytest.raises(JpegError):
            read_coefficients(prog[:n])
        try:
            read_coefficients(prog[:n], strict=False)
        except JpegError:
            pass


@pytest.mark.parametrize(
    "name",
    ["libjpeg-turbo/testorig.jpg", "pillow/app13-multiple.jpg", "pillow/pil_sample_rgb.jpg"],
)
def test_random_bit_flips_never_crash(name):
    data = _need(ZOO / name).read_bytes()
    rng = np.random.default_rng(12345)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(100):
        buf = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(2, len(buf)))  # keep SOI: the rest is fair game
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        for strict in (True, False):
            try:
                c = read_coefficients(bytes(buf), strict=strict, max_pixels=4_000_000)
            except JpegError:
                outcomes["error"] += 1
            else:
                outcomes["ok"] += 1
                assert all(p.dtype == np.int16 and p.ndim == 3 for p in c.planes)
            # the fast decoder gives up on anything odd, so both decoders agree exactly
            _assert_same(*_both_decoders(bytes(buf), strict))
    assert outcomes["error"] > 0


def test_huge_dimensions_fail_fast_without_allocating():
    path = _need(ZOO / "libjpeg-turbo/testorig.jpg")
    data = bytearray(path.read_bytes())
    sof = _sof_offset(bytes(data))
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)  # height, width
    t0 = time.perf_counter()
    with pytest.raises(JpegError, match=r"65000x65000 = 4\.2 Gpixels exceeds max_pixels=178956970"):
        read_coefficients(bytes(data))
    assert time.perf_counter() - t0 < 0.5
    # larger than libjpeg's own limit: still a JpegError
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65535, 65535)
    with pytest.raises(JpegError):
        read_coefficients(bytes(data), max_pixels=2**40)
    # zero height
    data[sof + 5 : sof + 9] = struct.pack(">HH", 0, 100)
    with pytest.raises(JpegError):
        read_coefficients(bytes(data))


def test_max_pixels(data_dir):
    path = _coco(1)[0]
    c = read_coefficients(path)
    npix = c.width * c.height
    with pytest.raises(JpegError, match=rf"{c.width}x{c.height} = .* exceeds max_pixels=1000"):
        read_coefficients(path, max_pixels=1000)
    assert read_coefficients(path, max_pixels=npix).width == c.width
    with pytest.raises(JpegError):
        read_coefficients(path, max_pixels=npix - 1)
    with pytest.raises(ValueError, match="max_pixels"):
        read_coefficients(path, max_pixels=-1)


def test_unsupported_sampling_and_colour(tmp_path):
    data = bytearray(_need(ZOO / "pillow/pil_sample_rgb.jpg").read_bytes())  # 4:4:4
    sof = _sof_offset(bytes(data))
    ncomp = data[sof + 9]
    assert ncomp == 3
    factors = sof + 10 + 1  # component 0's sampling byte; components are 3 bytes apart
    bad = bytearray(data)
    bad[factors + 3] = 0x22  # Cb 2x2 with Y 1x1: chroma exceeds luma
    with pytest.raises(UnsupportedJpegError, match=r"Y 1x1, Cb 2x2, Cr 1x1 are not supported"):
        read_coefficients(bytes(bad))
    bad = bytearray(data)
    bad[factors] = 0x31  # Y 3x1: a ratio of 3
    with pytest.raises(UnsupportedJpegError, match="ratio of 1, 2 or 4"):
        read_coefficients(bytes(bad))
    # an RGB JPEG (Adobe transform 0)
    rgb = tmp_path / "rgb.jpg"
    x = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    with jpeglib.version("turbo210"):
        im = jpeglib.from_spatial(x)
        im.jpeg_color_space = jpeglib.JCS_RGB
        im.write_spatial(str(rgb))
    with pytest.raises(UnsupportedJpegError, match=r"RGB JPEG .* not supported .*pixel path"):
        read_coefficients(rgb)


def test_scan_limit_stops_scan_bombs():
    data = _need(ZOO / "pillow/app13-multiple.jpg").read_bytes()  # progressive, 11 scans
    segs = _segments(data)
    scans = [(s, e) for m, s, e in segs if m == 0xDA]
    s, e = min(scans, key=lambda se: se[1] - se[0])
    eoi = segs[-1][1]
    bomb = data[:eoi] + data[s:e] * 600 + data[eoi:]
    with pytest.raises(JpegError, match="more than 500 scans"):
        read_coefficients(bomb, strict=False)
    with pytest.raises(JpegError, match="damaged JPEG"):
        read_coefficients(bomb)  # strict: the first bogus scan already fails
