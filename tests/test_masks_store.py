"""Mask stores: ``encode_masks`` / ``freqdata encode masks`` round trip, determinism, error
log, ``--into`` an image store, block-wise labels, exit codes, incomplete stores.

Runs on a few images of the real coco-mini val annotations (kept small: the suite must stay
fast on a shared 2-core machine).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import COCO_VAL, DATA
from typer.testing import CliRunner

from freqdata.cli.main import app
from freqdata.job import encode_images
from freqdata.masks import (
    IGNORE_INDEX,
    blockwise,
    dct_encode,
    full_image_masks,
    load_coco,
    load_instances,
    patch_encode,
)
from freqdata.masks.store import (
    category_mapping,
    category_maps,
    encode_masks,
    grid_of,
    open_mask_store,
    upsample_grid,
)
from freqdata.store import open_store

VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"
runner = CliRunner()


@pytest.fixture(scope="module")
def val(data_dir) -> dict:
    return load_coco(VAL)


@pytest.fixture(scope="module")
def crowd_image(val) -> int:
    """The first image with a crowd region."""
    return min(int(a["image_id"]) for a in val["annotations"] if a["iscrowd"])


@pytest.fixture(scope="module")
def subset(val, crowd_image) -> list[int]:
    """Six images: one with a crowd region and five others."""
    ids = sorted(int(im["id"]) for im in val["images"] if im["id"] != crowd_image)
    return sorted({crowd_image, *ids[1:6]})


def _small(val: dict, image_ids: list[int]) -> dict:
    keep = set(image_ids)
    return {"images": [im for im in val["images"] if im["id"] in keep],
            "categories": val["categories"],
            "annotations": [a for a in val["annotations"] if a["image_id"] in keep]}


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def test_round_trip_equals_the_library(tmp_path, val, subset):
    out = tmp_path / "m.zarr"
    summary = encode_masks(VAL, out, image_ids=subset, weak=[4, 8], batch_images=4)
    inst = load_instances(val, k=128, image_ids=subset)
    inst112 = load_instances(val, k=112, image_ids=subset)
    s = open_mask_store(out)
    assert s.complete and len(s) == len(inst) == summary.instances > 0
    assert summary.errors == [] and summary.skipped == {"crowd": inst.crowd_skipped}
    np.testing.assert_allclose(s.vectors[:], dct_encode(inst.masks, 300), rtol=0, atol=2e-6)
    assert s.vectors.dtype == np.float32 and s.vectors.shape == (len(inst), 300)
    pv, pl = patch_encode(inst112.masks)
    np.testing.assert_array_equal(s.patch_vectors[:], pv)
    np.testing.assert_array_equal(s.patch_labels[:], pl)
    assert s.patch_labels.dtype == np.uint8 and s.patch_vectors.shape[1:] == (14, 14, 6)
    for name in ("image_ids", "ann_ids", "category_ids", "boxes", "areas", "iscrowd"):
        np.testing.assert_array_equal(getattr(s, name), getattr(inst, name))
    assert s.boxes.dtype == np.float64 and (s.image_index == -1).all()
    assert list(s.images.ids) == subset and s.images.file_names[0].endswith(".jpg")
    one = s[3]
    assert one["ann_id"] == int(inst.ann_ids[3]) and one["vector"].shape == (300,)
    rows = s.rows_of(subset[0])
    assert (s.image_ids[rows] == subset[0]).all() and len(rows) > 0
    cfg = s.config
    assert (cfg["k"], cfg["n"], cfg["method"], cfg["weak"]) == (128, 300, "box", [4, 8])
    assert cfg["patch"] == {"k": 112, "patch": 8, "dims": 6}
    # plain zarr can read it without freqdata
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["freqdata"]["format"] == "freqdata-masks"
    assert g["vectors"].shape == (len(inst), 300)


def test_same_input_gives_identical_bytes(tmp_path, subset):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    for out in (a, b):
        encode_masks(VAL, out, image_ids=subset, weak=[8], batch_images=3)
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys() and fa == fb


def test_weak_labels_round_trip_and_overlap_rules(tmp_path, val, subset, crowd_image):
    out = tmp_path / "w.zarr"
    encode_masks(VAL, out, image_ids=subset, weak=[4, 16], patch=False)
    s = open_mask_store(out)
    mapping = category_mapping(val)
    maps = dict(category_maps(_small(val, subset), mapping=mapping))
    for row, image_id in enumerate(s.images.ids):
        full = s.weak_full(row)
        np.testing.assert_array_equal(full, maps[int(image_id)])
        assert full.shape == tuple(s.images.sizes[row]) and full.dtype == np.uint8
        for nu in (4, 16):
            grid = s.weak_grid(row, nu)
            assert grid.shape == (2 * nu + 1, 2 * nu + 1)
            np.testing.assert_array_equal(s.weak_labels(row, nu), blockwise(full, nu))
    assert (s.weak_full(s.image_row(crowd_image)) == IGNORE_INDEX).any()  # crowd: ignored
    assert s.categories[0] == {"id": 1, "name": "person", "label": 1}
    with pytest.raises(KeyError):
        s.weak_grid(0, 5)


def test_category_map_overlaps_by_hand():
    """Big square (cat 3) under a small square (cat 1); crowd (cat 1) under both."""
    sq = [[1, 1, 7, 1, 7, 7, 1, 7]]  # pixels 1..6 (centres inside [1, 7])
    small = [[4, 4, 9, 4, 9, 9, 4, 9]]  # pixels 4..8
    crowd = {"size": [10, 10], "counts": [0, 10, 90]}  # column-major: first image column
    ds = {"images": [{"id": 1, "height": 10, "width": 10, "file_name": "1.jpg"}],
          "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 5, 5],
               "segmentation": small, "iscrowd": 0, "area": 25},
              {"id": 2, "image_id": 1, "category_id": 3, "bbox": [1, 1, 6, 6],
               "segmentation": sq, "iscrowd": 0, "area": 36},
              {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 10],
               "segmentation": crowd, "iscrowd": 1, "area": 10}]}
    (_, m), = category_maps(ds)
    expect = np.zeros((10, 10), np.uint8)
    expect[:, 0] = IGNORE_INDEX  # crowd: column-major RLE, first 10 pixels = column 0
    expect[1:7, 1:7] = 2  # category 3 → label 2
    expect[4:9, 4:9] = 1  # smaller instance painted last, on top
    np.testing.assert_array_equal(m, expect)
    (_, m2), = category_maps(ds, crowd="category")
    assert (m2[:, 0] == 1).all()
    g = grid_of(m, 2)
    assert g.shape == (5, 5)
    np.testing.assert_array_equal(upsample_grid(g, m.shape), blockwise(m, 2))


def _broken_copy(val: dict, subset: list[int], tmp_path: Path) -> tuple[Path, dict]:
    ds = copy.deepcopy(_small(val, subset))
    anns = [a for a in ds["annotations"] if not a["iscrowd"]]
    bad = {
        anns[0]["id"]: "bad segmentation",
        anns[1]["id"]: "degenerate box",
        anns[2]["id"]: "bad bbox",
        anns[3]["id"]: "unknown category_id",
    }
    anns[0]["segmentation"] = [[10.0, 10.0, "x", 20.0, 30.0, 40.0]]
    anns[1]["bbox"][2] = 0.0
    del anns[2]["bbox"]
    anns[3]["category_id"] = 9999
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(ds))
    return path, bad


def test_bad_annotations_are_recorded_not_fatal(tmp_path, val, subset):
    path, bad = _broken_copy(val, subset, tmp_path)
    out = tmp_path / "b.zarr"
    r = runner.invoke(app, ["encode", "masks", str(path), str(out), "--quiet"])
    assert r.exit_code == 1, r.output
    assert "degenerate box" in r.output and "failed" in r.output
    s = open_mask_store(out)
    assert s.complete
    got = {e["ann_id"]: e["reason"] for e in s.errors}
    assert got.keys() == bad.keys()
    for ann_id, reason in bad.items():
        assert got[ann_id].startswith(reason), (ann_id, got[ann_id])
    good = load_instances(val, k=128, image_ids=subset)
    assert len(s) == len(good) - len(bad)
    assert not set(bad) & set(s.ann_ids.tolist())
    r = runner.invoke(app, ["inspect", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["failed"] == 4 and len(info["errors"]) == 4 and info["complete"]


def test_into_an_image_store(tmp_path, val, subset):
    names = {int(im["id"]): im["file_name"] for im in val["images"]}
    in_store = subset[1:4]  # three of the six images; the others are not in the store
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{COCO_VAL / names[i]}\n" for i in reversed(in_store)))
    store = tmp_path / "img.zarr"
    encode_images(listing, store, workers=0)
    before = _files(store)
    r = runner.invoke(app, ["encode", "masks", str(_write(tmp_path, _small(val, subset))),
                            "--into", str(store), "--quiet", "--weak", "8"])
    assert r.exit_code == 0, r.output
    assert "3 in the image store" in r.output
    s = open_mask_store(store)  # the image store path finds its masks group
    assert Path(s.path) == store / "masks"
    expect = {i: len(in_store) - 1 - j for j, i in enumerate(in_store)}  # reversed order
    for row, image_id in enumerate(s.images.ids):
        assert s.images.image_index[row] == expect.get(int(image_id), -1)
    for image_id, index in zip(s.image_ids, s.image_index, strict=True):
        assert index == expect.get(int(image_id), -1)
    img = open_store(store)  # the image store is untouched and still reads
    assert len(img) == 3 and img.complete
    after = _files(store)
    assert {k: v for k, v in after.items() if not k.startswith("masks/")} == before
    assert s.config["image_store"] == ".."
    r = runner.invoke(app, ["encode", "masks", str(VAL), "--into", str(store), "--quiet"])
    assert r.exit_code == 2 and "already has masks" in r.output
    r = runner.invoke(app, ["inspect", str(store), "--json"])  # still an image store
    assert r.exit_code == 0 and json.loads(r.output)["samples"] == 3
    other = tmp_path / "other.json"
    ds = _small(val, [i for i in subset if i not in in_store])
    other.write_text(json.dumps(ds))
    r = runner.invoke(app, ["encode", "masks", str(other), "--into", str(store), "--quiet",
                            "--overwrite"])
    assert r.exit_code == 2 and "none of the" in r.output


def _write(tmp_path: Path, ds: dict) -> Path:
    path = tmp_path / "subset.json"
    path.write_text(json.dumps(ds))
    return path


def test_cli_exit_codes_and_inspect(tmp_path, val, subset):
    ann = _write(tmp_path, _small(val, subset[:3]))
    out = tmp_path / "c.zarr"
    r = runner.invoke(app, ["encode", "masks", str(ann), str(out), "--quiet", "--k", "64",
                            "--n", "100", "--no-patch", "--method", "crop"])
    assert r.exit_code == 0, r.output
    s = open_mask_store(out)
    assert s.vectors.shape[1] == 100 and s.config["method"] == "crop"
    assert "patch" not in s.group and s.config["patch"] is None
    inst = load_instances(val, k=64, method="crop", image_ids=subset[:3])
    np.testing.assert_allclose(s.vectors[:], dct_encode(inst.masks, 100), atol=2e-6)
    r = runner.invoke(app, ["inspect", str(out)])
    assert r.exit_code == 0 and "complete" in r.output and "instances" in r.output
    for args in (
        [str(ann), str(out)],  # exists, no --overwrite
        [str(ann)],  # neither OUT nor --into
        [str(ann), str(tmp_path / "x"), "--weak", "8,a"],
        [str(ann), str(tmp_path / "x"), "--method", "poly"],
        [str(ann), str(tmp_path / "x"), "--k", "8", "--n", "100"],  # n > K*K
        [str(tmp_path / "missing.json"), str(tmp_path / "x")],
        [str(ann), str(tmp_path / "x"), "--into", str(out)],
    ):
        r = runner.invoke(app, ["encode", "masks", *args, "--quiet"])
        assert r.exit_code == 2, (args, r.output)
    assert not (tmp_path / "x").exists()
    r = runner.invoke(app, ["encode", "masks", str(ann), str(out), "--quiet", "--overwrite"])
    assert r.exit_code == 0, r.output
    (tmp_path / "notzarr").mkdir()
    (tmp_path / "notzarr" / "keep.txt").write_text("mine")
    r = runner.invoke(app, ["encode", "masks", str(ann), str(tmp_path / "notzarr"), "--quiet",
                            "--overwrite"])
    assert r.exit_code == 2 and (tmp_path / "notzarr" / "keep.txt").exists()


def test_interrupted_encode_says_incomplete(tmp_path, subset):
    out = tmp_path / "i.zarr"

    def stop(done: int, total: int, failed: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_masks(VAL, out, image_ids=subset, batch_images=2, on_progress=stop)
    s = open_mask_store(out)
    assert not s.complete and len(s.images) == 2
    assert set(s.image_ids.tolist()) <= set(subset[:2])
    r = runner.invoke(app, ["inspect", str(out)])
    assert r.exit_code == 0 and "INCOMPLETE" in r.output


def test_full_image_masks_match_store_maps(val, subset, crowd_image):
    """The category map's instance pixels are exactly the union of the instances."""
    plain = [i for i in subset if i != crowd_image][:1]
    inst = load_instances(val, k=28, image_ids=plain)
    (_, m), = category_maps(_small(val, plain))
    union = np.zeros(m.shape, bool)
    for mask in full_image_masks(val, inst.ann_ids):
        union |= mask.astype(bool)
    np.testing.assert_array_equal(m > 0, union)


def test_match_images_by_name_then_coco_id():
    from freqdata.masks.store import match_images

    paths = ["a/000000000139.jpg", "b/cat.jpg", "c/cat.jpg", "d/000000000285.png"]
    got = match_images(paths, ["x/cat.jpg", "000000000139.jpg", "renamed.jpg", None, "dog.jpg"],
                       [1, 2, 285, 139, 7])
    # by name (first sample wins), by name, by COCO id of the stem, by id (no name), absent
    assert got.tolist() == [1, 0, 3, 0, -1] and got.dtype == np.int64
