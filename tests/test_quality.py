"""Quality reports: boundary IoU (hand-computed and reference cases), ``freqdata quality
masks`` / ``weak`` (JSON structure, PASS lines, PNG) and ``freqdata bench masks`` wiring.

Kept fast: a few images of the real coco-mini val annotations and small K / n lists.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from conftest import DATA
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from freqdata.cli.main import app
from freqdata.masks import (
    blockwise,
    energy_kept,
    full_image_masks,
    load_coco,
    load_instances,
    miou,
    reconstruction_ious,
)
from freqdata.masks.report import (
    _cv2_linear,
    boundary_distance,
    boundary_iou,
    dctmask_repo_ious,
    mask_to_boundary,
    masks_quality,
    reconstruction_boundary_ious,
    structure_checks,
    weak_quality,
)
from freqdata.masks.store import category_maps

VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"
runner = CliRunner()
SUBSET = 12  # first images (by id) of val used by the CLI tests


@pytest.fixture(scope="module")
def val(data_dir) -> dict:
    return load_coco(VAL)


@pytest.fixture(scope="module")
def first_ids(val) -> list[int]:
    return sorted(int(im["id"]) for im in val["images"])[:SUBSET]


# --------------------------------------------------------------------------- boundary IoU


def _reference_boundary(mask: np.ndarray, ratio: float = 0.02) -> np.ndarray:
    """Independent reference: chessboard distance to the nearest background pixel (outside
    the image = background, via one pixel of zero padding) <= d. Eroding by a 3x3 square d
    times keeps exactly the pixels whose chessboard distance to background exceeds d."""
    h, w = mask.shape
    d = max(1, round(ratio * np.sqrt(h**2 + w**2)))
    padded = np.pad(mask.astype(bool), 1)
    dist = ndimage.distance_transform_cdt(padded, metric="chessboard")[1:-1, 1:-1]
    return mask.astype(bool) & (dist <= d)


def test_boundary_iou_hand_computed():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True  # 4x4 square
    b[2:6, 3:7] = True  # the same, one pixel to the right
    assert boundary_distance((10, 10)) == 1  # round(0.02 * 14.1) = 0 → at least 1
    ring = a & ~np.pad(np.ones((2, 2), bool), ((3, 5), (3, 5)))
    np.testing.assert_array_equal(mask_to_boundary(a), ring)  # 12-pixel ring
    # rings share rows 2 and 5 at columns 3..5: 6 pixels; union 12 + 12 - 6 = 18
    assert boundary_iou(a, b) == pytest.approx(6 / 18)
    full = np.ones((10, 10), bool)  # the image edge is a boundary
    assert mask_to_boundary(full).sum() == 36
    big = np.zeros((100, 100), bool)
    big[10:30, 40:60] = True
    assert boundary_distance((100, 100)) == 3  # round(2.83)
    assert mask_to_boundary(big).sum() == 20 * 20 - 14 * 14
    assert boundary_iou(np.zeros((5, 5)), np.zeros((5, 5))) == 1.0
    assert boundary_iou(a[None], np.zeros((1, 10, 10), bool))[0] == 0.0


def test_boundary_iou_matches_reference_on_real_masks(val):
    inst = load_instances(val, k=28, image_ids=[139])
    truth = np.stack(full_image_masks(val, inst.ann_ids)).astype(bool)
    for m in truth[:6]:
        np.testing.assert_array_equal(mask_to_boundary(m), _reference_boundary(m))
    got = reconstruction_boundary_ious(inst, val, [None])[0]
    from freqdata.masks import paste_masks

    h, w = (int(v) for v in inst.image_sizes[0])
    pasted = paste_masks(inst.masks.astype(np.float64), inst.boxes_xyxy, (h, w))
    for i in range(len(inst)):
        bt, bp = _reference_boundary(truth[i]), _reference_boundary(pasted[i])
        union = np.count_nonzero(bt | bp)
        ref = np.count_nonzero(bt & bp) / union if union else 1.0
        assert got[i] == pytest.approx(ref, abs=1e-12)
    assert 0.3 < got.mean() < 1.0  # boundary IoU is much harsher than mask IoU at 28x28


# --------------------------------------------------------------------------- masks quality


def test_masks_quality_matches_reconstruction_ious_and_checks(val, first_ids):
    q = masks_quality(val, (28, 64, 128), (100, 300), image_ids=first_ids)
    inst = load_instances(val, k=64, image_ids=first_ids)
    direct = reconstruction_ious(inst, val, [None, 100, 300])
    np.testing.assert_array_equal(q.ious[(64, None)], direct[0])
    np.testing.assert_array_equal(q.ious[(64, 300)], direct[2])
    np.testing.assert_array_equal(q.ann_ids, inst.ann_ids)
    rows = {(r["k"], r["n"]): r for r in q.result["rows"]}
    assert rows[(64, 300)]["iou"] == pytest.approx(direct[2].mean())
    assert rows[(28, None)]["paper"] == 0.938 and rows[(128, 100)]["paper"] == 0.940
    assert rows[(28, 100)]["paper"] is None
    names = {c["name"]: c["pass"] for c in q.result["checks"]}
    assert names["grid-rises-with-k"] and names["dct-rises-with-n"]
    assert names["k128-n100-vs-grid28"] and names["k128-n300-vs-grid64"]
    # a result that breaks the structure fails the checks
    broken = json.loads(json.dumps(q.result))
    for r in broken["rows"]:
        if r["k"] == 128 and r["n"] == 300:
            r["iou"] = 0.5
    bad = {c["name"]: c["pass"] for c in structure_checks(broken)}
    assert not bad["dct-rises-with-n"] and not bad["k128-n300-vs-grid64"]


def test_quality_masks_cli_json_png(tmp_path, first_ids):
    js, png = tmp_path / "q.json", tmp_path / "q.png"
    r = runner.invoke(app, ["quality", "masks", str(VAL), "--k", "28,64,128", "--n", "100,300",
                            "--max-images", str(SUBSET), "--boundary", "--json", str(js),
                            "--png", str(png), "--quiet"])
    assert r.exit_code == 0, r.output
    for line in ("PASS grid IoU rises with K", "PASS DCT IoU rises with n",
                 "PASS K=128 n=100 within 0.01 of the 28x28 grid",
                 "PASS K=128 n=300 within 0.01 of the 64x64 grid"):
        assert line in r.output, r.output
    assert "FAIL" not in r.output and "(0.938)" in r.output and "boundary IoU" in r.output
    res = json.loads(js.read_text())
    assert res["report"] == "masks" and res["all_pass"]
    assert res["annotations"]["images"] == SUBSET and res["settings"]["ks"] == [28, 64, 128]
    assert len(res["rows"]) == 3 * 3  # per K: grid, n=100, n=300
    row = res["rows"][0]
    assert set(row) >= {"k", "n", "kind", "iou", "boundary_iou", "paper", "by_size"}
    assert 0 < row["boundary_iou"] < row["iou"] <= 1
    assert set(row["by_size"]) == {"small", "medium", "large"}
    assert {c["name"] for c in res["checks"]} >= {"grid-rises-with-k", "dct-rises-with-n"}
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 800 and im.height > 600
    r = runner.invoke(app, ["quality", "masks", str(VAL), "--k", "28,x"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["quality", "masks", str(VAL), "--method", "poly"])
    assert r.exit_code == 2


def test_dctmask_repo_protocol(val, first_ids):
    """DCT-Mask's evaluate_iou.py: OpenCV bilinear resize weights, two-class in-box IoU."""
    np.testing.assert_allclose(_cv2_linear(2, 4), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    np.testing.assert_allclose(_cv2_linear(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(_cv2_linear(3, 3), np.eye(3))
    inst = load_instances(val, k=28, image_ids=first_ids[:4])
    r = dctmask_repo_ious(inst, val, [None, 28 * 28, 100])
    # all K*K coefficients give the grid back, up to rounding at pixels that interpolate to
    # exactly 0.5 (the threshold), which flip either way
    assert abs(r[0].mean() - r[1].mean()) < 0.005 and np.median(np.abs(r[0] - r[1])) == 0
    assert 0.85 < r[0].mean() < 1.0 and (r[0] <= 1.0).all()
    q = masks_quality(val, (28,), (100,), protocol="dctmask-repo", image_ids=first_ids[:4])
    assert q.result["settings"]["protocol"] == "dctmask-repo"
    assert q.result["rows"][0]["iou"] == pytest.approx(r[0].mean())
    with pytest.raises(ValueError, match="boundary"):
        masks_quality(val, (28,), (100,), protocol="dctmask-repo", boundary=True)
    assert runner.invoke(app, ["quality", "masks", str(VAL), "--protocol", "dctmask-repo",
                               "--boundary"]).exit_code == 2


# --------------------------------------------------------------------------- weak labels


def test_weak_quality_figures(val, first_ids):
    ids = first_ids[:5]
    res = weak_quality(val, (2, 8, 32), image_ids=ids)
    maps = dict(category_maps({**val, "images": [im for im in val["images"]
                                                 if im["id"] in set(ids)]}))
    e = np.mean([energy_kept(m, [2, 8, 32], 81) for m in maps.values()], axis=0)
    rows = res["rows"]
    assert [r["nu_max"] for r in rows] == [2, 8, 32] and rows[0]["grid"] == "5x5"
    np.testing.assert_allclose([r["energy_kept"] for r in rows], e)
    per = [miou(blockwise(m, 8), m) for m in maps.values()]
    assert rows[1]["miou_image_mean"] == pytest.approx(np.mean(per))
    assert all(a["energy_kept"] <= b["energy_kept"] for a, b in itertools.pairwise(rows))
    assert all(a["miou"] < b["miou"] for a, b in itertools.pairwise(rows))
    one = weak_quality(val, (8,), image_ids=ids[:1])  # one image: dataset mIoU = miou()
    m = maps[ids[0]]
    assert one["rows"][0]["miou"] == pytest.approx(miou(blockwise(m, 8), m))
    assert "logits" in res["r_ce"]


def test_quality_weak_cli(tmp_path, data_dir):
    js, png = tmp_path / "w.json", tmp_path / "w.png"
    r = runner.invoke(app, ["quality", "weak", str(VAL), "--nu", "4,16", "--max-images", "4",
                            "--json", str(js), "--png", str(png), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "energy kept" in r.output and "R_ce" in r.output
    res = json.loads(js.read_text())
    assert res["report"] == "weak" and len(res["rows"]) == 2 and "_example_label" not in res
    with Image.open(png) as im:
        assert im.format == "PNG"
    assert runner.invoke(app, ["quality", "weak", str(VAL), "--nu", "a"]).exit_code == 2
    assert runner.invoke(app, ["quality", "weak", str(VAL), "--crowd", "x"]).exit_code == 2


# --------------------------------------------------------------------------- bench masks


def test_bench_masks_cli(tmp_path, val, first_ids):
    keep = set(first_ids[:3])
    small = {"images": [im for im in val["images"] if im["id"] in keep],
             "categories": val["categories"],
             "annotations": [a for a in val["annotations"] if a["image_id"] in keep]}
    ann = tmp_path / "small.json"
    ann.write_text(json.dumps(small))
    js = tmp_path / "b.json"
    r = runner.invoke(app, ["bench", "masks", str(ann), "--repeats", "1", "--no-torch",
                            "--json", str(js)])
    assert r.exit_code == 0, r.output
    assert "freqdata-box-encode" in r.output and "masks/s/core" in r.output
    assert "N/A" in r.output and "GPU" in r.output
    res = json.loads(js.read_text())
    assert res["benchmark"] == "masks" and res["command"].startswith("freqdata bench masks")
    assert res["targets"][0]["name"] == "cpu-box-encode" and res["targets"][-1]["pass"] is None
    assert runner.invoke(app, ["bench", "masks", str(ann), "--n", "0"]).exit_code == 2
