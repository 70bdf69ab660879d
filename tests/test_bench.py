"""``freqdata bench decode``: runs end to end and writes complete JSON (no timing asserts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import ANTS_BEES, COCO_VAL, IMAGENET
from typer.testing import CliRunner

from freqdata.bench.decode import ROW_NAMES, TARGETS, chroma_sampling
from freqdata.cli.main import app

runner = CliRunner()


def _three_coco(tmp_path: Path) -> Path:
    src = tmp_path / "imgs"
    (src / "sub").mkdir(parents=True)
    files = sorted(COCO_VAL.glob("*.jpg"))[:3]
    assert len(files) == 3
    shutil.copy(files[0], src / files[0].name)
    shutil.copy(files[1], src / "sub" / files[1].name)  # found recursively
    shutil.copy(files[2], src / files[2].name.replace(".jpg", ".JPEG"))  # any case
    return src


def test_bench_decode_json(tmp_path: Path, data_dir: Path) -> None:
    src = _three_coco(tmp_path)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "notes.txt").write_text("ignored")
    out = tmp_path / "bench.json"
    r = runner.invoke(app, ["bench", "decode", str(src), "--repeats", "1", "--json", str(out),
                            "--label", "test run", "--quiet"])
    assert r.exit_code == 0, r.output
    for name in ROW_NAMES:
        assert name in r.output
    assert r.output.count("PASS") + r.output.count("FAIL") + r.output.count("N/A") >= len(
        TARGETS
    )

    result = json.loads(out.read_text())
    assert result["label"] == "test run"
    assert result["command"].startswith("freqdata bench decode ")
    assert result["files"]["n"] == 3 and result["files"]["found"] == 4
    (skip,) = result["files"]["skipped"]
    assert skip["path"] == "broken.jpg" and skip["reason"]
    assert set(result["rows"]) == set(ROW_NAMES)
    for row in result["rows"].values():
        assert len(row["repeat_totals_s"]) == 1 and row["ms_per_image"] > 0
        assert row["ratio_to_simplejpeg_rgb"] > 0 and row["ratio_to_dctnet_style"] > 0
    assert result["rows"]["simplejpeg-rgb"]["ratio_to_simplejpeg_rgb"] == 1.0
    assert result["rows"]["dctnet-style"]["ratio_to_dctnet_style"] == 1.0
    assert [t["name"] for t in result["targets"]] == [t.name for t in TARGETS]
    for t in result["targets"]:
        if t["sampling"] in (None, "4:4:4"):  # coco-mini's first files are 4:4:4
            assert isinstance(t["pass"], bool) and t["ratio"] > 0 and t["limit"] > 0
        else:  # no file of that sampling: N/A, not counted
            assert t["pass"] is None and t["ratio"] is None
    assert result["files"]["by_sampling"] == {"4:4:4": 3}
    assert list(result["by_sampling"]) == ["4:4:4"] and result["by_sampling"]["4:4:4"]["n"] == 3
    hw, sw = result["hardware"], result["software"]
    assert hw["cpu_model"] and hw["logical_cpus"] >= 1
    assert sw["numpy"] and sw["pillow"] and sw["simplejpeg"] and sw["python"]


def test_bench_decode_limit_and_sorting(tmp_path: Path, data_dir: Path) -> None:
    files = sorted((ANTS_BEES / "val" / "ants").glob("*.jpg"))[:2]
    src = tmp_path / "ab"
    src.mkdir()
    for p in files:
        shutil.copy(p, src / p.name)
    out = tmp_path / "b.json"
    r = runner.invoke(app, ["bench", "decode", str(src), "--limit", "1", "--repeats", "1",
                            "--json", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    assert result["files"]["n"] == 1 and result["files"]["first"] == files[0].name


def test_bench_decode_bad_usage(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["bench", "decode", str(tmp_path / "empty"), "--quiet"])
    assert r.exit_code == 2
    (tmp_path / "empty" / "junk.jpg").write_bytes(b"nope")
    r = runner.invoke(app, ["bench", "decode", str(tmp_path / "empty"), "--quiet"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["bench", "decode", str(tmp_path / "missing"), "--quiet"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["bench", "decode", str(tmp_path), "--repeats", "0", "--quiet"])
    assert r.exit_code == 2


def test_bench_decode_per_chroma_sampling(tmp_path: Path, data_dir: Path) -> None:
    """Real ImageNet files of every sampling (4:4:4, 4:2:2, 4:2:0, gray): one group each,
    timed on those files alone, the groups adding up to the row; the coefficient targets
    are judged per sampling."""
    src = tmp_path / "mix"
    src.mkdir()
    picks = {  # one real file per sampling (imagenet-sample/PROVENANCE.md)
        "n01440764_tench.JPEG": "4:4:4",
        "n03770679_minivan.JPEG": "4:2:2",
        "n01644900_tailed_frog.JPEG": "4:2:0",
        "n04008634_projectile.JPEG": "gray",
    }
    for name in picks:
        shutil.copy(IMAGENET / name, src / name)
    for name, sampling in picks.items():
        assert chroma_sampling((src / name).read_bytes()) == sampling
    out = tmp_path / "mix.json"
    r = runner.invoke(app, ["bench", "decode", str(src), "--repeats", "2", "--json", str(out),
                            "--quiet"])
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    groups = result["by_sampling"]
    assert list(groups) == ["4:4:4", "4:2:2", "4:2:0", "gray"]  # SAMPLINGS order
    for sampling in groups:
        assert sampling in r.output
    for name in ROW_NAMES:
        for k in range(2):
            parts = sum(g["rows"][name]["repeat_totals_s"][k] for g in groups.values())
            assert abs(parts - result["rows"][name]["repeat_totals_s"][k]) < 1e-5
        for g in groups.values():
            assert g["n"] == 1 and g["rows"][name]["ms_per_image"] > 0
    targets = {t["name"]: t for t in result["targets"]}
    for sampling in ("444", "422", "420"):
        t = targets[f"coeff-vs-rgb-decode-{sampling}"]
        ratio = groups[t["sampling"]]["rows"]["coeff"]["ratio_to_simplejpeg_rgb"]
        assert t["ratio"] == ratio and t["pass"] is (ratio <= t["limit"])


def test_bench_loader_runs_for_real(tmp_path: Path, data_dir: Path) -> None:
    """``freqdata bench loader`` on a real store (36 real photos, fixed 8x8-block cubes in
    shards): every row streams real batches; the bounds (store read, decompression alone,
    memcpy) come with it; the wrapper's own checks."""
    from freqdata.job import EncodeOptions, encode_images
    from freqdata.sources import Sources

    paths = [str(p) for p in sorted(ANTS_BEES.glob("train/*/*.jpg"))[::6][:36]]
    store = tmp_path / "s.zarr"
    sources = Sources(paths, [int("/bees/" in p) for p in paths], ["ants", "bees"])
    encode_images(sources, store, EncodeOptions(path="pixels", geometry="80:64"))
    out = tmp_path / "loader.json"
    r = runner.invoke(app, ["bench", "loader", str(store), "--batch-size", "8", "--workers", "1",
                            "--repeats", "1", "--seconds", "0.2", "--device", "cpu",
                            "--label", "real", "--json", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    assert result["label"] == "real" and result["command"].startswith("freqdata bench loader ")
    assert result["store"]["samples"] == 36 and result["store"]["shard_reader"] is True
    rows = result["rows"]
    assert {"per-sample", "zarr-runs", "random/w1", "quasi/t2", "random+int8/t2"} <= set(rows)
    for name, row in rows.items():
        (run,) = row["runs"]
        assert run["samples"] >= 8 and run["samples"] % 8 == 0, name  # whole batches
        assert row["samples_per_s"] > 0 and row["samples_per_cpu_s"] > 0
        assert name in r.output
    bounds = result["bounds"]
    assert bounds["samples"] == 8 and bounds["sample_bytes"] == 24 * 8 * 8 * 2  # int16
    for name in ("store-read", "decompress", "memcpy"):
        assert bounds[name]["samples_per_s"] > 0 and name in r.output
    verdicts = [ln for ln in r.output.splitlines() if ln.startswith(("PASS ", "FAIL "))]
    assert len(verdicts) == 1 and "samples per CPU-second" in verdicts[0]

    r = runner.invoke(app, ["bench", "loader", str(store), "--limit", "4", "--quiet"])
    assert r.exit_code == 2 and "--limit" in r.output  # an option it does not take
