"""Smoke test of the mask benchmark module (figures are not asserted: benchmarks are commands)."""

from __future__ import annotations

import json

from conftest import DATA

from freqdata.bench.masks import TARGET_ROW, render_table, run_masks_bench
from freqdata.masks import load_coco

VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"



def test_run_masks_bench_smoke(data_dir):
    ds = load_coco(VAL)
    keep = {im["id"] for im in ds["images"][:6]}
    small = {
        "images": [im for im in ds["images"] if im["id"] in keep],
        "annotations": [a for a in ds["annotations"] if a["image_id"] in keep],
    }
    result = run_masks_bench(small, k=64, n=100, repeats=1, torch_batch=64, print_table=False)
    json.dumps(result)  # JSON-able
    rows = result["rows"]
    for name in (
        "pycocotools-box",
        "scipy-dctn",
        "naive-box-encode",
        "freqdata-dct",
        "freqdata-box-dense",
        TARGET_ROW,
        "freqdata-crop-encode",
    ):
        assert rows[name]["masks"] == result["settings"]["instances"] > 0
        assert rows[name]["masks_per_s"] > 0
    if result["torch"] is not None:
        assert rows["torch-dct-encode"]["masks"] == 64
        assert rows["torch-targets"]["masks"] == 64
    assert result["targets"][0]["row"] == TARGET_ROW
    text = render_table(result)
    assert TARGET_ROW in text and ("PASS" in text or "FAIL" in text)
