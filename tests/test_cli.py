"""The freqdata command: encode images, inspect, exit statuses (0 ok, 1 data, 2 usage,
130 interrupted), options checked before anything is written, the trainers' run folders."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ANTS_BEES, COCO_VAL
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
    r = runner.invoke(app, ["inspect", str(tmp_path)])  # not a store: unusable data
    assert r.exit_code == 1 and "not a" in r.output
    r = runner.invoke(app, ["inspect", str(tmp_path / "missing.zarr")])
    assert r.exit_code == 1 and "does not exist" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--path", "pixel"], "unknown path 'pixel'"),
        (["--chroma", "nativ"], "unknown chroma 'nativ'"),
        (["--workers", "-1"], "--workers"),
        (["--geometry", "resnet", "--path", "coeff"], "--path pixels"),
        (["--geometry", "7:9"], "unknown geometry"),
        (["--max-pixels", "0"], "--max-pixels"),
        (["--resume", "--overwrite"], "exclude each other"),
    ],
)
def test_bad_options_exit_2_before_anything_is_written(tmp_path, data_dir, args, message):
    src = _folder(tmp_path, bad=False)
    out = tmp_path / "s.zarr"
    r = runner.invoke(app, ["encode", "images", str(src), str(out), "--quiet", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not out.exists()


def test_geometry_implies_the_pixel_path(tmp_path, data_dir):
    src = _folder(tmp_path, bad=False)
    out = tmp_path / "s.zarr"
    r = runner.invoke(app, ["encode", "images", str(src), str(out), "--geometry", "72:64",
                            "--workers", "0", "--quiet"])  # fmt: skip
    assert r.exit_code == 0, r.output
    info = json.loads(runner.invoke(app, ["inspect", str(out), "--json"]).output)
    assert info["config"]["path"] == "pixels" and info["first_sample_shapes"] == [[24, 8, 8]]


def test_refused_resume_prints_no_progress_bar(tmp_path, data_dir):
    src = _folder(tmp_path, bad=False)
    out = tmp_path / "s.zarr"
    r = runner.invoke(app, ["encode", "images", str(src), str(out), "--workers", "0"])
    assert r.exit_code == 0 and "encoding" in r.output  # the bar, once the store is open
    r = runner.invoke(app, ["encode", "images", str(src), str(out), "--resume",
                            "--preset", "dctnet-6"])  # fmt: skip
    assert r.exit_code in (1, 2), r.output
    assert "encoding" not in r.output


def test_version_and_help():
    from freqdata import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"freqdata {__version__}"
    for cmd in (["encode", "images"], ["encode", "masks"], ["train", "classify"], ["inspect"]):
        r = runner.invoke(app, [*cmd, "--help"])
        assert r.exit_code == 0 and "<bool>" not in r.output and "{" not in r.output, r.output
    r = runner.invoke(app, ["encode", "images", "--help"])
    assert "encode images [OPTIONS] SRC OUT" in r.output


def _inputs_done(store) -> int:
    try:
        attrs = json.loads((store / "zarr.json").read_text())["attributes"]["freqdata"]
        return attrs["progress"]["inputs_done"]
    except (OSError, ValueError, KeyError):
        return 0


def test_ctrl_c_says_how_to_resume(tmp_path, data_dir):
    """A real SIGINT during an encode: exit 130, the count done, the --resume hint; the
    store is left incomplete with that many inputs done."""
    paths = sorted(str(p) for p in COCO_VAL.glob("*.jpg"))
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(paths * 20) + "\n")  # long enough to be interrupted
    out = tmp_path / "s.zarr"
    env = {**os.environ, "COLUMNS": "250"}
    p = subprocess.Popen(
        [sys.executable, "-m", "freqdata.cli", "encode", "images", str(lst), str(out),
         "--geometry", "resnet", "--workers", "1", "--batch-size", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _inputs_done(out) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)  # until a batch is committed
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert "interrupted:" in err and "--resume" in err
    info = json.loads(runner.invoke(app, ["inspect", str(out), "--json"]).output)
    assert not info["complete"] and 0 < info["inputs_done"] < len(paths) * 20
    assert f"{info['inputs_done']} of {len(paths) * 20}" in err


def test_inspect_mentions_attached_masks(tmp_path, data_dir):
    ann = data_dir / "coco" / "coco-mini" / "instances_val2017.json"
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{p}\n" for p in sorted(COCO_VAL.glob("*.jpg"))[:3]))
    store = tmp_path / "s.zarr"
    r = runner.invoke(app, ["encode", "images", str(lst), str(store), "--workers", "0", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "masks" not in json.loads(runner.invoke(app, ["inspect", str(store), "--json"]).output)
    r = runner.invoke(app, ["encode", "masks", str(ann), "--into", str(store), "--quiet"])
    assert r.exit_code == 0, r.output
    info = json.loads(runner.invoke(app, ["inspect", str(store), "--json"]).output)
    m = info["masks"]
    assert m["images_in_image_store"] == 3 and m["instances"] > 0 and m["complete"]
    r = runner.invoke(app, ["inspect", str(store)])
    assert r.exit_code == 0 and f"{m['instances']} instances of 3 images" in r.output
