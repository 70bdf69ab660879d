"""``freqdata bench decode``: runs end to end and writes complete JSON (no timing asserts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import ANTS_BEES, COCO_VAL
from typer.testing import CliRunner

from freqdata.bench.decode import ROW_NAMES, TARGETS
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
    assert r.output.count("PASS") + r.output.count("FAIL") >= len(TARGETS)

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
        assert isinstance(t["pass"], bool) and t["ratio"] > 0 and t["limit"] > 0
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
