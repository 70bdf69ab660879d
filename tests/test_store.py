"""Encoding folders into stores: layout, labels, statistics, error log, resume, determinism."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import ANTS_BEES, ZOO
from hostile import write_hostile

from freqdata import encode_image, open_store
from freqdata.job import EncodeOptions, encode_images
from freqdata.sources import list_sources
from freqdata.store import StoreWriter


def _dataset(root: Path, per_class: int = 5, hostile: bool = True) -> dict[str, str]:
    """ants/bees subset as class folders (copies of real files) plus hostile inputs."""
    for cls in ("ants", "bees"):
        (root / cls).mkdir(parents=True)
        for p in sorted((ANTS_BEES / "train" / cls).glob("*.jpg"))[:per_class]:
            shutil.copy(p, root / cls / p.name)
    expected = {}
    if hostile:
        expected = write_hostile(root / "bees", ANTS_BEES / "train/ants/0013035.jpg")
        shutil.copy(ANTS_BEES / "train/ants/imageNotFound.gif", root / "ants" / "imageNotFound.gif")
        expected["imageNotFound.gif"] = "not a JPEG"
    return expected


def _inputs_done(store: Path) -> int:
    try:
        return json.loads((store / "zarr.json").read_text())["attributes"]["freqdata"]["progress"][
            "inputs_done"
        ]
    except (OSError, ValueError, KeyError):
        return 0


def _tree(store: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(store)): f.read_bytes() for f in sorted(store.rglob("*")) if f.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("ds")
    expected = _dataset(root)
    return root, expected


def test_sources_labels_follow_sorted_class_folders(dataset):
    root, _ = dataset
    src = list_sources(root)
    assert src.class_names == ["ants", "bees"]
    assert [src.labels[i] for i, p in enumerate(src.paths) if "/ants/" in p] == [0] * 6
    assert src.paths == sorted(src.paths)  # ants before bees, names sorted within


def test_ragged_store_roundtrip_errors_and_stats(dataset, tmp_path):
    root, expected = dataset
    out = tmp_path / "s.zarr"
    summary = encode_images(root, out, batch_size=3)
    assert summary.failed == len(expected) and summary.encoded == 10
    s = open_store(out)
    assert s.complete and len(s) == 10 and s.layout == "ragged"
    failed = {Path(e["path"]).name: e["reason"] for e in s.errors}
    assert set(failed) == set(expected)
    for name, fragment in expected.items():
        assert fragment.lower() in failed[name].lower(), (name, failed[name])
    cubes = []
    for i in range(len(s)):
        cube, label = s[i]
        ref = encode_image(root / s.paths[i])  # paths are relative to SRC
        np.testing.assert_array_equal(cube, ref)
        assert label == (0 if s.paths[i].startswith("ants/") else 1)
        cubes.append(cube.reshape(cube.shape[0], -1).astype(np.float64))
    flat = np.concatenate(cubes, axis=1)
    np.testing.assert_allclose(s.mean, flat.mean(axis=1), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(s.std, flat.std(axis=1), rtol=1e-10)
    # readable with plain zarr, no freqdata: offsets/shapes index the flat data
    g = zarr.open_group(str(out), mode="r")
    off, shp = g["cubes/offset"][3], g["cubes/shape"][3]
    plain = g["cubes/data"][off : off + np.prod(shp)].reshape(shp)
    np.testing.assert_array_equal(plain, s[3][0])


def test_fixed_store_pixels_resnet(dataset, tmp_path):
    root, _ = dataset
    out = tmp_path / "f.zarr"
    opts = EncodeOptions(preset="dctnet-24", path="pixels", geometry="resnet")
    summary = encode_images(root, out, opts, batch_size=4)
    s = open_store(out)
    assert s.layout == "fixed" and len(s) == summary.encoded
    # the GIF is an image: the pixel path encodes it; the four hostile files still fail
    assert summary.encoded == 11 and summary.failed == 4
    arr = zarr.open_group(str(out), mode="r")["cubes"]
    assert arr.shape == (11, 24, 56, 56) and arr.dtype == np.int16
    ref = encode_image(root / s.paths[5], "dctnet-24", "pixels", "resnet")
    np.testing.assert_array_equal(arr[5], ref)


def test_native_chroma_store(dataset, tmp_path):
    root, _ = dataset
    shutil.copy(ANTS_BEES / "train/ants/175998972.jpg", root / "ants" / "z420.jpg")  # 4:2:0
    out = tmp_path / "n.zarr"
    try:
        encode_images(root, out, EncodeOptions(chroma="native"))
        _check_native_store(open_store(out), root)
    finally:
        (root / "ants" / "z420.jpg").unlink()


def _check_native_store(s, root):
    assert any(p.endswith("z420.jpg") for p in s.paths)
    lumas, chromas = zip(*(s[i][0] for i in range(len(s))), strict=True)
    flat_l = np.concatenate([a.reshape(16, -1) for a in lumas], axis=1).astype(np.float64)
    flat_c = np.concatenate([a.reshape(8, -1) for a in chromas], axis=1).astype(np.float64)
    ref_mean = np.concatenate([flat_l.mean(axis=1), flat_c.mean(axis=1)])
    ref_std = np.concatenate([flat_l.std(axis=1), flat_c.std(axis=1)])
    np.testing.assert_allclose(s.mean, ref_mean, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(s.std, ref_std, rtol=1e-10)
    for i in range(len(s)):
        (luma, chroma), _ = s[i]
        ref_l, ref_c = encode_image(root / s.paths[i], chroma="native")
        np.testing.assert_array_equal(luma, ref_l)
        np.testing.assert_array_equal(chroma, ref_c)
    assert len(s.mean) == 24


def test_options_validated_before_writing(dataset, tmp_path):
    root, _ = dataset
    with pytest.raises(ValueError, match="pixels"):
        encode_images(root, tmp_path / "x.zarr", EncodeOptions(geometry="resnet"))
    with pytest.raises(ValueError, match="unknown preset"):
        encode_images(root, tmp_path / "y.zarr", EncodeOptions(preset="dctnet-7"))
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "y.zarr").exists()


@pytest.mark.parametrize("opts", [EncodeOptions(), EncodeOptions(path="pixels", geometry="resnet")])
def test_rerun_and_workers_are_byte_identical(dataset, tmp_path, opts):
    root, _ = dataset
    encode_images(root, tmp_path / "a.zarr", opts, batch_size=4)
    encode_images(root, tmp_path / "b.zarr", opts, batch_size=4, workers=2)
    encode_images(root, tmp_path / "a.zarr", opts, batch_size=4, overwrite=True)
    assert _tree(tmp_path / "a.zarr") == _tree(tmp_path / "b.zarr")


def test_existing_store_needs_resume_or_overwrite(dataset, tmp_path):
    root, _ = dataset
    encode_images(root, tmp_path / "a.zarr")
    with pytest.raises(FileExistsError):
        encode_images(root, tmp_path / "a.zarr")
    with pytest.raises(ValueError, match="different"):
        encode_images(root, tmp_path / "a.zarr", EncodeOptions(preset="dctnet-6"), resume=True)


@pytest.mark.parametrize("geometry", ["none", "resnet"])
def test_crash_mid_batch_then_resume_is_identical(dataset, tmp_path, monkeypatch, geometry):
    """A crash after a batch's data is written but before it is committed, then --resume."""
    root, _ = dataset
    opts = EncodeOptions(path="coeff" if geometry == "none" else "pixels", geometry=geometry)
    encode_images(root, tmp_path / "ref.zarr", opts, batch_size=3)

    calls = {"n": 0}
    real_commit = StoreWriter.commit

    def crashing_commit(self, inputs_done, samples):
        calls["n"] += 1
        if calls["n"] == 4:  # creation + 2 batches committed; dies committing the third
            raise KeyboardInterrupt
        real_commit(self, inputs_done, samples)

    monkeypatch.setattr(StoreWriter, "commit", crashing_commit)
    with pytest.raises(KeyboardInterrupt):
        encode_images(root, tmp_path / "crash.zarr", opts, batch_size=3)
    monkeypatch.setattr(StoreWriter, "commit", real_commit)
    s = open_store(tmp_path / "crash.zarr")
    assert not s.complete and s.progress.inputs_done == 6
    summary = encode_images(root, tmp_path / "crash.zarr", opts, batch_size=3, resume=True)
    assert summary.resumed_from == 6
    assert _tree(tmp_path / "crash.zarr") == _tree(tmp_path / "ref.zarr")


def test_killed_cli_encode_resumes_identically(tmp_path, data_dir):
    """SIGKILL a real `freqdata encode images` run mid-way, resume it, compare bytes."""
    root = tmp_path / "ds"
    _dataset(root, per_class=20, hostile=False)
    cmd = [sys.executable, "-m", "freqdata.cli", "encode", "images", str(root)]
    flags = ["--batch-size", "2", "--workers", "1", "--quiet"]
    ref = subprocess.run([*cmd, str(tmp_path / "ref.zarr"), *flags], capture_output=True)
    assert ref.returncode == 0, ref.stderr.decode()
    proc = subprocess.Popen(
        [*cmd, str(tmp_path / "k.zarr"), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline and _inputs_done(tmp_path / "k.zarr") < 6:
        time.sleep(0.01)  # wait until some batches are committed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    s = open_store(tmp_path / "k.zarr")
    assert not s.complete and 0 < s.progress.inputs_done < 40
    res = subprocess.run([*cmd, str(tmp_path / "k.zarr"), *flags, "--resume"], capture_output=True)
    assert res.returncode == 0, res.stderr.decode()
    assert _tree(tmp_path / "k.zarr") == _tree(tmp_path / "ref.zarr")
    assert len(open_store(tmp_path / "k.zarr")) == 40


def test_zoo_every_file_encodes_or_is_recorded(tmp_path, data_dir):
    files = sorted(p for p in ZOO.rglob("*") if p.suffix in (".jpg", ".mpo"))
    listing = tmp_path / "zoo.txt"
    listing.write_text("".join(f"{p}\n" for p in files))
    for path in ("coeff", "pixels"):
        summary = encode_images(listing, tmp_path / f"{path}.zarr", EncodeOptions(path=path))
        s = open_store(tmp_path / f"{path}.zarr")
        assert len(s) + len(s.errors) == len(files) and summary.encoded == len(s)
        for e in s.errors:
            assert len(e["reason"]) > 10  # a reason a person can act on
        for i in range(len(s)):
            cube, _ = s[i]
            assert cube.dtype == np.int16 and cube.shape[0] == 24 and cube.size > 0


def test_a_crashing_decoder_costs_only_its_input(tmp_path, data_dir):
    """A worker process that dies is replaced; only the input that killed it is lost."""
    from hostile import encode_or_crash

    from freqdata.job import WORKER_DIED, _ordered_map

    files = [str(p) for p in sorted((ANTS_BEES / "val/bees").glob("*.jpg"))[:9]]
    files.insert(4, str(tmp_path / "crash.jpg"))
    out = list(_ordered_map(encode_or_crash, files, 2, EncodeOptions()))
    assert out[4] == WORKER_DIED
    for k, (path, result) in enumerate(zip(files, out, strict=True)):
        if k != 4:
            np.testing.assert_array_equal(result[0], encode_image(path))


def test_url_sources_list_and_encode_like_local_ones(dataset, tmp_path):
    """A class folder on an fsspec filesystem (memory://) lists and encodes as on disk."""
    fsspec = pytest.importorskip("fsspec")
    root, _ = dataset
    fs = fsspec.filesystem("memory")
    local = list_sources(root)
    for p in local.paths:
        fs.pipe(f"/ds/{Path(p).relative_to(root).as_posix()}", Path(p).read_bytes())
    remote = list_sources("memory://ds")
    assert remote.class_names == local.class_names and remote.labels == local.labels
    assert [p.split("/ds/", 1)[1] for p in remote.paths] == [
        Path(p).relative_to(root).as_posix() for p in local.paths
    ]
    encode_images(remote, tmp_path / "r.zarr")
    encode_images(local, tmp_path / "l.zarr")
    r, lo = open_store(tmp_path / "r.zarr"), open_store(tmp_path / "l.zarr")
    assert len(r) == len(lo) and len(r.errors) == len(lo.errors)
    for i in range(len(r)):
        np.testing.assert_array_equal(r[i][0], lo[i][0])
    fs.rm("/ds", recursive=True)
