"""Encoding on a Dask LocalCluster: byte-identical to one process, worker loss, resume, URLs."""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from pathlib import Path

import dask
import numpy as np
import pytest
from conftest import ANTS_BEES, DATA
from hostile import write_hostile
from test_store import _tree

from freqdata import open_store
from freqdata.job import EncodeOptions, encode_images, encode_one

distributed = pytest.importorskip(
    "distributed", reason="dask[distributed] is not installed (pip install freqdata[dask])"
)

FIXED = EncodeOptions(path="pixels", geometry="resnet")
RAGGED = EncodeOptions()
NATIVE = EncodeOptions(chroma="native")  # two ragged parts: luma and chroma
LAYOUTS = {"fixed": FIXED, "ragged": RAGGED, "native": NATIVE}


def _dataset(root: Path, per_class: int) -> Path:
    for cls in ("ants", "bees"):
        (root / cls).mkdir(parents=True)
        for p in sorted((ANTS_BEES / "train" / cls).glob("*.jpg"))[:per_class]:
            shutil.copy(p, root / cls / p.name)
    hostile = write_hostile(root / "ants", ANTS_BEES / "train/ants/0013035.jpg")
    for name in list(hostile)[2:]:  # keep two hostile files: empty, not an image
        (root / "ants" / name).unlink()
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory, data_dir) -> Path:
    return _dataset(tmp_path_factory.mktemp("dist-ds"), per_class=35)


def _cluster():
    """A LocalCluster of two single-threaded worker processes and its client."""
    from freqdata.distributed import local_worker_env

    # a task that kills its worker twice is given up by Dask (KilledWorker): fast crash test
    with local_worker_env(), dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def client():
    yield from _cluster()


@pytest.fixture
def own_client():
    """A cluster of the test's own, for tests that kill workers: the nanny's replacement
    workers end with it (no process outlives the test)."""
    yield from _cluster()


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> dict[str, Path]:
    """Single-process stores of the same inputs, one per layout."""
    root = tmp_path_factory.mktemp("ref")
    out = {}
    for name, opts in LAYOUTS.items():
        out[name] = root / f"{name}.zarr"
        encode_images(images, out[name], opts, batch_size=16, workers=1)
    return out


def _idle(client) -> None:
    """Wait until no task of an interrupted run is still running on the cluster."""
    for _ in range(200):
        if not any(client.processing().values()):
            return
        time.sleep(0.05)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_distributed_store_is_byte_identical(images, reference, client, tmp_path, layout):
    from freqdata.distributed import encode_distributed

    opts = LAYOUTS[layout]
    out = tmp_path / "d.zarr"
    summary = encode_distributed(images, out, opts, scheduler=client, task_inputs=8)
    assert summary.failed == 2 and summary.encoded == 70
    assert {Path(e["path"]).name for e in summary.errors} == {"empty.jpg", "text.jpg"}
    assert _tree(out) == _tree(reference[layout])
    s = open_store(out)
    assert s.complete and len(s) == 70


def kill_once(src, opts, *, marker: str, victim: str):
    """Encoder that kills its worker process the first time it sees input ``victim``."""
    if isinstance(src, str) and src.endswith(victim):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os._exit(9)  # the worker dies mid-task; the nanny starts a new one
    return encode_one(src, opts)


def test_worker_killed_mid_run_still_identical(images, reference, own_client, tmp_path):
    from freqdata.distributed import encode_distributed

    victim = sorted(p.name for p in (images / "bees").glob("*.jpg"))[10]
    marker = tmp_path / "killed"
    fn = functools.partial(kill_once, marker=str(marker), victim="bees/" + victim)
    out = tmp_path / "d.zarr"
    encode_distributed(images, out, FIXED, scheduler=own_client, task_inputs=8, encode_fn=fn)
    assert marker.exists()  # a worker really died
    assert _tree(out) == _tree(reference["fixed"])


def _committed(store: Path) -> int:
    try:
        return json.loads((store / "zarr.json").read_text())["attributes"]["freqdata"]["progress"][
            "samples"
        ]
    except (OSError, ValueError, KeyError):
        return 0


class Stop(Exception):
    pass


@pytest.mark.parametrize("layout", ["fixed", "ragged"])
def test_interrupted_run_resumes_identical(images, reference, client, tmp_path, layout):
    from freqdata.distributed import encode_distributed

    opts = FIXED if layout == "fixed" else RAGGED
    out = tmp_path / "d.zarr"

    def stop_after(done: int, total: int, failed: int) -> None:
        if _committed(out) > 0 or (layout == "fixed" and done >= 40):
            raise Stop  # the client dies with part of the work committed

    with pytest.raises(Stop):
        encode_distributed(
            images,
            out,
            opts,
            scheduler=client,
            task_inputs=8,
            on_progress=stop_after,
            commit_every_s=0.0,
        )
    _idle(client)
    partial = open_store(out)
    assert not partial.complete and partial.progress.inputs_done < 72
    if layout == "ragged":  # 512 KiB chunks: some samples were committed (fixed: a shard is 64)
        assert 0 < partial.progress.samples < 70
    finished = [
        d for d in (out / "_dist").glob("t*") if "manifest" in (d / "zarr.json").read_text()
    ]
    assert finished  # encode results that the resume reuses instead of recomputing
    summary = encode_distributed(images, out, opts, scheduler=client, task_inputs=8, resume=True)
    assert summary.resumed_from == partial.progress.inputs_done
    assert _tree(out) == _tree(reference[layout])


def test_distributed_continues_single_process_store(images, reference, client, tmp_path):
    # workers=1 below: ChannelStats.of depends on the cube's memory layout (see
    # docs/scale-out.md, "Known issue"), pickled cubes are C-ordered
    """A store interrupted by the single-process encoder is finished on the cluster."""
    from freqdata.distributed import encode_distributed
    from freqdata.sources import list_sources

    out = tmp_path / "d.zarr"
    src = list_sources(images)
    calls = []

    def stop(done: int, total: int, failed: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise Stop

    with pytest.raises(Stop):
        encode_images(src, out, RAGGED, batch_size=10, on_progress=stop, workers=1)
    encode_distributed(src, out, RAGGED, scheduler=client, task_inputs=8, resume=True)
    assert _tree(out) == _tree(reference["ragged"])


def test_memory_url_roundtrip(images, tmp_path):
    """OUT as an fsspec URL (memory://): written and read back like a local store."""
    from freqdata.store import store_bytes

    few = tmp_path / "few"
    (few / "ants").mkdir(parents=True)
    for p in sorted((images / "ants").glob("*.jpg"))[:3]:
        shutil.copy(p, few / "ants" / p.name)
    url = "memory://freqdata-test/s.zarr"
    local = tmp_path / "s.zarr"
    encode_images(few, url, FIXED)
    encode_images(few, local, FIXED)
    s, ref = open_store(url), open_store(local)
    assert len(s) == len(ref) == 3 and s.complete
    for i in range(3):
        np.testing.assert_array_equal(s[i][0], ref[i][0])
    np.testing.assert_array_equal(s.mean, ref.mean)
    assert store_bytes(url) == store_bytes(local)
    from freqdata.loader import StoreDataset  # the loader reads the same URL (through zarr)

    got, want = StoreDataset(url).read_batch([0, 2]), StoreDataset(local).read_batch([0, 2])
    for k in want:
        if hasattr(want[k], "shape"):
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))


def test_memory_url_distributed_threads(images, tmp_path):
    """fsspec URLs for SRC and OUT through the distributed encoder (in-process workers)."""
    import fsspec

    from freqdata.distributed import encode_distributed

    fs = fsspec.filesystem("memory")
    for p in sorted((images / "bees").glob("*.jpg"))[:4]:
        fs.pipe(f"/freqdata-src/bees/{p.name}", p.read_bytes())
    fs.pipe("/freqdata-src/bees/empty.jpg", b"")
    local = tmp_path / "src"
    (local / "bees").mkdir(parents=True)
    for p in sorted((images / "bees").glob("*.jpg"))[:4]:
        shutil.copy(p, local / "bees" / p.name)
    (local / "bees" / "empty.jpg").write_bytes(b"")
    ref = tmp_path / "ref.zarr"
    encode_images(local, ref, FIXED, workers=1)
    url = "memory://freqdata-dist/s.zarr"
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        summary = encode_distributed(
            "memory://freqdata-src", url, FIXED, scheduler=c, task_inputs=2
        )
    assert summary.encoded == 4 and summary.failed == 1
    s, r = open_store(url), open_store(ref)
    assert len(s) == 4 and s.complete
    for i in range(4):
        np.testing.assert_array_equal(s[i][0], r[i][0])
    np.testing.assert_array_equal(s.group["stats"]["m2"][:], r.group["stats"]["m2"][:])


def test_cli_scheduler_local(images, tmp_path):
    """``freqdata encode images --scheduler local:2`` equals the single-process CLI run."""
    from typer.testing import CliRunner

    from freqdata.cli.main import app

    src = tmp_path / "src"
    (src / "bees").mkdir(parents=True)
    for p in sorted((images / "bees").glob("*.jpg"))[:6]:
        shutil.copy(p, src / "bees" / p.name)
    runner = CliRunner()
    args = ["encode", "images", str(src), "--path", "pixels", "--geometry", "resnet", "--quiet"]
    r = runner.invoke(app, [*args[:3], str(tmp_path / "a.zarr"), *args[3:], "--workers", "1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, [*args[:3], str(tmp_path / "b.zarr"), *args[3:], "--scheduler", "local:2"]
    )
    assert r.exit_code == 0, r.output
    assert _tree(tmp_path / "b.zarr") == _tree(tmp_path / "a.zarr")


def test_crashing_decoder_costs_only_its_input(own_client, tmp_path, data_dir, monkeypatch):
    """An input that kills every worker it runs on: Dask gives its task up (KilledWorker),
    the client re-encodes that task with one child process per input like the
    single-process encoder, and the store equals the single-process one."""
    from hostile import encode_or_crash

    import freqdata.job
    from freqdata.distributed import encode_distributed
    from freqdata.job import WORKER_DIED

    src = tmp_path / "src"
    (src / "bees").mkdir(parents=True)
    files = sorted((ANTS_BEES / "val/bees").glob("*.jpg"))[:7]
    for p in files:
        shutil.copy(p, src / "bees" / p.name)
    shutil.copy(files[0], src / "bees" / "crash.jpg")
    out = tmp_path / "d.zarr"
    summary = encode_distributed(
        src, out, FIXED, scheduler=own_client, task_inputs=3, encode_fn=encode_or_crash
    )
    assert [(Path(e["path"]).name, e["reason"]) for e in summary.errors] == [
        ("crash.jpg", WORKER_DIED)
    ]
    monkeypatch.setattr(freqdata.job, "encode_one", encode_or_crash)
    encode_images(src, tmp_path / "ref.zarr", FIXED, workers=1)
    assert _tree(out) == _tree(tmp_path / "ref.zarr")


# --------------------------------------------------------------------------- masks

MASKS_VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"
MASK_OPTS = {"weak": (8, 16), "batch_images": 3}


@pytest.fixture(scope="module")
def mask_images(data_dir) -> list[int]:
    from freqdata.masks import load_coco

    return sorted(int(im["id"]) for im in load_coco(MASKS_VAL)["images"])[:14]


@pytest.fixture(scope="module")
def mask_reference(mask_images, tmp_path_factory) -> Path:
    from freqdata.masks import encode_masks

    out = tmp_path_factory.mktemp("mref") / "m.zarr"
    encode_masks(MASKS_VAL, out, image_ids=mask_images, **MASK_OPTS)
    return out


def _annotation_file(tmp_path: Path, image_ids: list[int]) -> Path:
    """The coco-mini val annotations of ``image_ids`` as a file of their own."""
    from freqdata.masks import load_coco

    coco = load_coco(MASKS_VAL)
    keep = set(image_ids)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({
        "images": [im for im in coco["images"] if im["id"] in keep],
        "categories": coco["categories"],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in keep]}))
    return ann


def test_masks_distributed_identical_with_a_worker_killed(
    mask_images, mask_reference, own_client, tmp_path
):
    """``encode_masks(scheduler=...)`` equals the single-process store byte for byte, also
    when a worker process is killed while batches are in flight (Dask reruns them)."""
    from freqdata.masks import encode_masks

    killed = []

    def kill_a_worker(done: int, total: int, failed: int) -> None:
        if done and not killed:
            pids = own_client.run(os.getpid)
            victim = pids[sorted(pids)[0]]
            os.kill(victim, 9)  # the nanny starts a new worker; Dask reruns its batches
            killed.append(victim)

    out = tmp_path / "d.zarr"
    summary = encode_masks(MASKS_VAL, out, image_ids=mask_images, scheduler=own_client,
                           on_progress=kill_a_worker, **MASK_OPTS)
    assert killed and summary.images == 14 and summary.instances > 0
    assert _tree(out) == _tree(mask_reference)


def test_masks_interrupted_then_resumed_identical(mask_images, mask_reference, client, tmp_path):
    """A run stopped after two batches (with rows past the last commit left behind, as a
    crash leaves them) and resumed on the cluster equals the uninterrupted store."""
    from freqdata.masks import encode_masks

    def stop(done: int, total: int, failed: int) -> None:
        if done >= 6:
            raise Stop

    out = tmp_path / "m.zarr"
    with pytest.raises(Stop):
        encode_masks(MASKS_VAL, out, image_ids=mask_images, scheduler=client, on_progress=stop,
                     **MASK_OPTS)
    _idle(client)
    import zarr

    g = zarr.open_group(str(out), mode="r+", zarr_format=3)  # uncommitted rows of a crash
    g["vectors"].resize((g["vectors"].shape[0] + 5, g["vectors"].shape[1]))
    g["vectors"][-5:] = 7.0
    summary = encode_masks(MASKS_VAL, out, image_ids=mask_images, scheduler=client, resume=True,
                           **MASK_OPTS)
    assert summary.resumed_from == 6
    assert _tree(out) == _tree(mask_reference)
    again = encode_masks(MASKS_VAL, out, image_ids=mask_images, resume=True, **MASK_OPTS)
    assert again.resumed_from == 14 and _tree(out) == _tree(mask_reference)
    with pytest.raises(ValueError, match="weak differ"):
        encode_masks(MASKS_VAL, out, image_ids=mask_images, resume=True, weak=(8,),
                     batch_images=3)


def test_cli_encode_masks_scheduler(mask_images, tmp_path):
    """``freqdata encode masks --scheduler local:2`` equals the single-process CLI run."""
    from typer.testing import CliRunner

    from freqdata.cli.main import app

    ann = _annotation_file(tmp_path, mask_images[:5])
    runner = CliRunner()
    r = runner.invoke(app, ["encode", "masks", str(ann), str(tmp_path / "a.zarr"), "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["encode", "masks", str(ann), str(tmp_path / "b.zarr"), "--quiet",
                            "--scheduler", "local:2"])
    assert r.exit_code == 0, r.output
    assert _tree(tmp_path / "b.zarr") == _tree(tmp_path / "a.zarr")
    r = runner.invoke(app, ["encode", "masks", str(ann), str(tmp_path / "b.zarr"), "--quiet"])
    assert r.exit_code == 2 and "--resume" in r.output


def test_scaling_bench_masks(mask_images, tmp_path, capsys):
    """``python -m freqdata.bench.scaling ANN --masks`` reports single and dask-N rows."""
    from freqdata.bench.scaling import main

    ann = _annotation_file(tmp_path, mask_images[:3])
    main([str(ann), "--masks", "--workers", "1", "--weak", "8", "--json", str(tmp_path / "r.json")])
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [r["config"] for r in rep["results"]] == ["single", "dask-1"]
    assert rep["encoded"] == 3 and rep["results"][0]["speedup"] == 1.0
    assert all(r["instances_per_s"] > 0 for r in rep["results"])
    assert "dask-1" in capsys.readouterr().out
