"""Hostile inputs of issue 12, each made from real data and refused (or read) alike by both
encoding paths: damaged JPEGs, a tiny file declaring a huge image, orientation metadata in
the forms the two paths once read differently, and COCO annotations that crashed pycocotools
or the encoder (the crash cases run in a subprocess: a regression is exit 139, not a dead
pytest)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import COCO_VAL, DATA, ZOO
from hostile import (
    empty_huffman_tables,
    exif_orientation_segment,
    renumber_restarts,
    scan_then_eoi,
    tiny_bomb,
    truncate_mid_scan,
    with_segments,
    xmp_orientation_segment,
)

from freqdata import encode_image
from freqdata.errors import InputError, UsageError
from freqdata.jpeg import DamagedJpegWarning, JpegTooLargeError, read_coefficients
from freqdata.masks import load_coco, load_instances
from freqdata.pixels import ImageDecodeError, load_ycbcr

COCO_JPEG = COCO_VAL / "000000000139.jpg"  # 640x426, 4:2:0
UPRIGHT = COCO_VAL / "000000000802.jpg"  # 424x640 4:4:4: whole blocks, so orientation is exact
RESTARTS = ZOO / "pillow" / "flower2.jpg"  # baseline with restart markers
VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"


def _damaged() -> dict[str, bytes]:
    real, rst = COCO_JPEG.read_bytes(), RESTARTS.read_bytes()
    big = (ZOO / "pillow" / "icc_profile_big.jpg").read_bytes()  # headers larger than the bound
    return {
        "scan header then EOI": scan_then_eoi(real),
        "scan header then EOI, big headers": scan_then_eoi(big),
        "empty Huffman tables": empty_huffman_tables(real),
        "wrong restart numbering": renumber_restarts(rst),
        "truncated mid-scan": truncate_mid_scan(real, eoi=False),
        "truncated mid-scan + EOI": truncate_mid_scan(real, eoi=True),
    }


@pytest.mark.parametrize("case", list(range(6)))
def test_damaged_jpegs_are_refused_by_both_paths(data_dir, case):
    data = list(_damaged().values())[case]
    with pytest.raises(InputError):
        read_coefficients(data)
    for path in ("coeff", "pixels"):
        with pytest.raises(InputError):
            encode_image(data, "dctnet-24", path)
    with pytest.raises(ImageDecodeError, match="JPEG"):
        load_ycbcr(data, "resnet")
    # lenient: decoded as far as it goes, with a warning naming the damage
    for path in ("coeff", "pixels"):
        with pytest.warns(DamagedJpegWarning, match="despite damage"):
            try:
                encode_image(data, "dctnet-24", path, lenient=True)
            except InputError:  # nothing decodable at all: still refused, after the warning
                pass


def test_clean_files_give_no_warning(data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedJpegWarning)
        for f in (COCO_JPEG, RESTARTS, ZOO / "pillow" / "app13-multiple.jpg"):
            encode_image(f, "dctnet-24", "pixels", lenient=True)
            encode_image(f, "dctnet-24", "coeff", lenient=True)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_tiny_file_declaring_a_huge_image_is_refused_from_the_header(data_dir):
    bomb = tiny_bomb(COCO_JPEG.read_bytes())  # < 500 bytes, 13377 x 13377: under max_pixels
    assert len(bomb) < 600
    with pytest.raises(InputError, match=r"13377x13377.*refused before decoding"):
        read_coefficients(bomb)
    with pytest.raises(ImageDecodeError, match=r"13377x13377.*refused before decoding"):
        load_ycbcr(bomb, "resnet")
    with pytest.raises(JpegTooLargeError, match="exceeds max_pixels=1000000"):
        read_coefficients(bomb, max_pixels=10**6)


@pytest.mark.parametrize(
    "segments",
    [
        [exif_orientation_segment(6, type_code=8)],  # SSHORT
        [exif_orientation_segment(6, type_code=3, big_endian=True)],
        [exif_orientation_segment(6, type_code=4)],  # LONG
        [xmp_orientation_segment(6)],
        [xmp_orientation_segment(6, element=True)],
        [exif_orientation_segment(6, type_code=8), xmp_orientation_segment(1)],  # EXIF wins
    ],
    ids=["sshort", "short-be", "long", "xmp-attr", "xmp-element", "exif-over-xmp"],
)
def test_one_orientation_reader_for_both_paths(data_dir, segments):
    base = UPRIGHT.read_bytes()
    upright = encode_image(with_segments(base), "all", "coeff")
    rotated = with_segments(base, *segments)
    a = encode_image(rotated, "all", "coeff")
    b = encode_image(rotated, "all", "pixels")
    assert a.shape == b.shape == (192, upright.shape[2], upright.shape[1])  # 6: transposed
    # within the documented coefficient-vs-pixel agreement (docs/conventions.md)
    assert np.abs(a.astype(np.float64) - b).mean() < 0.2
    # 6 = transpose, then horizontal flip: exact in the DCT domain for whole blocks
    ref = encode_image(with_segments(base, exif_orientation_segment(6)), "all", "coeff")
    np.testing.assert_array_equal(a, ref)


def test_invalid_exif_value_overrides_xmp(data_dir):
    data = with_segments(UPRIGHT.read_bytes(), exif_orientation_segment(9),
                         xmp_orientation_segment(6))
    for path in ("coeff", "pixels"):
        assert encode_image(data, "dctnet-6", path).shape[1:] == (80, 53)  # as stored


# ------------------------------------------------------------------------------- masks


def _one_image(tmp_path: Path, mutate) -> Path:
    """The first image of the real val annotations with its annotations, mutated."""
    val = json.loads(VAL.read_text())
    im = val["images"][0]
    ds = {"images": [im], "categories": val["categories"],
          "annotations": [a for a in val["annotations"] if a["image_id"] == im["id"]]}
    ds = copy.deepcopy(ds)
    mutate(ds)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(ds))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "freqdata.cli", *args], capture_output=True,
                          text=True, timeout=600)


def _first_polygon(ds: dict) -> dict:
    return next(a for a in ds["annotations"] if isinstance(a["segmentation"], list))


def test_triangle_at_1e8_is_recorded_not_a_segfault(data_dir, tmp_path):
    def far(ds):
        _first_polygon(ds)["segmentation"] = [[0, 0, 1e8, 0, 0, 1e8]]

    ann = _one_image(tmp_path, far)
    out = tmp_path / "m.zarr"
    r = _cli("encode", "masks", str(ann), str(out), "--quiet", "--weak", "8")
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])  # 139 was the segfault
    assert "out of range" in r.stdout + r.stderr
    r = _cli("encode", "masks", str(ann), str(out), "--quiet", "--weak", "8", "--resume")
    assert r.returncode in (0, 1), (r.returncode, r.stderr[-2000:])
    # and the library alone: skipped with its reason, the other instances encoded
    inst = load_instances(json.loads(ann.read_text()), k=32)
    assert inst.skipped_counts.get("out of range") == 1 and len(inst) > 0


def test_huge_declared_image_with_weak_labels_is_refused_before_allocating(data_dir, tmp_path):
    def huge(ds):
        ds["images"][0]["height"] = ds["images"][0]["width"] = 50000

    ann = _one_image(tmp_path, huge)
    r = _cli("encode", "masks", str(ann), str(tmp_path / "m.zarr"), "--quiet", "--weak", "8")
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "exceeds max_pixels=178956970" in r.stdout + r.stderr
    small = _cli("encode", "masks", str(VAL), str(tmp_path / "s.zarr"), "--quiet",
                 "--max-pixels", "1000", "--no-patch")
    assert small.returncode == 1 and "exceeds max_pixels=1000" in small.stdout + small.stderr


def test_rle_that_would_overflow_the_decoder_is_recorded(data_dir, tmp_path):
    def bad_rle(ds):
        im = ds["images"][0]
        _first_polygon(ds)["segmentation"] = {"size": [im["height"], im["width"]],
                                              "counts": "0" + "W" * 50}  # runs past H*W

    ann = _one_image(tmp_path, bad_rle)
    r = _cli("encode", "masks", str(ann), str(tmp_path / "m.zarr"), "--quiet", "--weak", "8")
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "bad segmentation" in r.stdout + r.stderr


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ds: ds.clear() or ds.update({"x": 1}), "'images' must be a list"),
        (lambda ds: ds["categories"][0].pop("id"), "category #0 has no integer id"),
        (lambda ds: ds["categories"].append(dict(ds["categories"][0])), "duplicate category id"),
        (lambda ds: ds["images"].append(dict(ds["images"][0])), "duplicate image id"),
        (lambda ds: ds.update({"annotations": {}}), "'annotations' must be a list"),
        (lambda ds: ds.pop("categories"), "'categories' must be a list"),
    ],
)
def test_malformed_coco_is_a_usage_error(data_dir, tmp_path, mutate, message):
    ann = _one_image(tmp_path, mutate)
    r = _cli("encode", "masks", str(ann), str(tmp_path / "m.zarr"), "--quiet")
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert message in r.stderr
    assert not (tmp_path / "m.zarr").exists()


def test_top_level_list_and_invalid_json(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(UsageError, match="must be a JSON object"):
        load_coco(tmp_path / "list.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UsageError, match="invalid JSON"):
        load_coco(tmp_path / "bad.json")


# ------------------------------------------------------------------------------- --lenient


def test_lenient_stores_damaged_jpegs_with_a_warning_log(data_dir, tmp_path):
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    (src / "ok.jpg").write_bytes(UPRIGHT.read_bytes())
    (src / "rst.jpg").write_bytes(renumber_restarts(RESTARTS.read_bytes()))
    (src / "cut.jpg").write_bytes(truncate_mid_scan(COCO_JPEG.read_bytes(), eoi=True))
    for lenient, status, samples, failed, warned in ((False, 1, 1, 2, 0), (True, 0, 3, 0, 2)):
        out = tmp_path / f"{lenient}.zarr"
        flag = ["--lenient"] if lenient else []
        r = _cli("encode", "images", str(src.parent), str(out), "--quiet", "--path", "pixels",
                 "--workers", "1", *flag)
        assert r.returncode == status, r.stderr[-2000:]
        info = json.loads(_cli("inspect", str(out), "--json").stdout)
        assert (info["samples"], info["failed"], info["warnings"]) == (samples, failed, warned)
        assert sorted(w["path"] for w in info["warning_log"]) == (
            ["a/cut.jpg", "a/rst.jpg"] if lenient else []
        )
        assert all("despite damage" in w["reason"] for w in info["warning_log"])


def test_strict_pixel_path_refuses_to_run_with_load_truncated_images(data_dir, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(UsageError, match="LOAD_TRUNCATED_IMAGES"):
        load_ycbcr(COCO_JPEG)
    assert load_ycbcr(COCO_JPEG, lenient=True).planes.shape == (3, 432, 640)


def test_orientation_reader_on_every_integer_type():
    from freqdata.orientation import exif_orientation, orientation, xmp_orientation

    for type_code in (1, 3, 4, 6, 8, 9):
        for big in (False, True):
            seg = exif_orientation_segment(7, type_code, big)
            assert exif_orientation(seg[4:]) == 7  # the APP1 payload, "Exif\0\0" first
    assert exif_orientation(exif_orientation_segment(-6, 8)[4:]) == 1  # present, invalid
    assert xmp_orientation(xmp_orientation_segment(8)[4:]) == 8
    assert xmp_orientation(xmp_orientation_segment(8, element=True)[4:]) == 8
    assert orientation(None, b"<x tiff:Orientation='5'/>") == 5
    assert orientation(b"junk", b"junk") == orientation() == 1
