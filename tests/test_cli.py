"""The freqdata command: encode images, inspect, exit statuses."""

from __future__ import annotations

import json
import shutil

from conftest import ANTS_BEES
from typer.testing import CliRunner

from freqdata.cli.main import app

runner = CliRunner(env={"COLUMNS": "250"})  # no line wrapping of long temp paths


def _folder(tmp_path, bad: bool):
    for cls in ("ants", "bees"):
        (tmp_path / "in" / cls).mkdir(parents=True)
        for p in sorted((ANTS_BEES / "val" / cls).glob("*.jpg"))[:3]:
            shutil.copy(p, tmp_path / "in" / cls / p.name)
    if bad:
        (tmp_path / "in" / "bees" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    return tmp_path / "in"


def test_encode_and_inspect(tmp_path, data_dir):
    src = _folder(tmp_path, bad=False)
    out = tmp_path / "s.zarr"
    r = runner.invoke(app, ["encode", "images", str(src), str(out), "--workers", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "encoded" in r.output and "6" in r.output
    r = runner.invoke(app, ["inspect", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["samples"] == 6 and info["complete"] and info["classes"] == {"ants": 3, "bees": 3}
    assert info["layout"] == "ragged" and len(info["mean"]) == 24
    r = runner.invoke(app, ["inspect", str(out)])
    assert r.exit_code == 0 and "complete" in r.output


def test_failed_inputs_give_exit_1_and_are_listed(tmp_path, data_dir):
    src = _folder(tmp_path, bad=True)
    out = tmp_path / "s.zarr"
    r = runner.invoke(
        app,
        [
            "encode",
            "images",
            str(src),
            str(out),
            "--quiet",
            "--workers",
            "2",
            "--path",
            "pixels",
            "--geometry",
            "resnet",
        ],
    )
    assert r.exit_code == 1, r.output
    assert "broken.jpg" in r.output
    r = runner.invoke(app, ["inspect", str(out), "--errors"])
    assert "broken.jpg" in r.output


def test_usage_errors_exit_2(tmp_path, data_dir):
    src = _folder(tmp_path, bad=False)
    out = tmp_path / "s.zarr"
    r = runner.invoke(app, ["encode", "images", str(src), str(out), "--preset", "dctnet-7"])
    assert r.exit_code == 2 and "unknown preset" in r.output
    assert not out.exists()
    r = runner.invoke(app, ["encode", "images", str(tmp_path / "nope"), str(out)])
    assert r.exit_code == 2
    runner.invoke(app, ["encode", "images", str(src), str(out), "--quiet", "--workers", "1"])
    r = runner.invoke(app, ["encode", "images", str(src), str(out), "--quiet"])
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(app, ["inspect", str(tmp_path)])
    assert r.exit_code == 2
