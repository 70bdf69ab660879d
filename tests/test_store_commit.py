"""The commit protocol and the writer lock under real faults: the real CLI SIGKILLed at
chosen and random points, then ``--resume``, gives a store byte-identical (every file) to an
uninterrupted run; a second writer is refused; a stale lock is taken over."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ANTS_BEES, DATA

from freqdata import open_store
from freqdata.store import StoreBusyError, StoreWriter
from freqdata.store.lock import LOCK_NAME
from freqdata.store.writer import KILL_ENV

CLI = [sys.executable, "-m", "freqdata.cli", "encode", "images"]
FLAGS = ["--batch-size", "3", "--workers", "0", "--quiet"]
N_IMAGES = 24  # + one GIF that fails: 25 inputs, 9 batches, 11 commits (create, 9, finish)


def _tree(store: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(store)): f.read_bytes() for f in sorted(store.rglob("*")) if f.is_file()
    }


def _record(store: Path) -> dict:
    try:
        return json.loads((store / "zarr.json").read_text())["attributes"]["freqdata"]
    except (OSError, ValueError, KeyError):
        return {}


def _run(src: Path, out: Path, *flags: str, env: dict[str, str] | None = None, wait: bool = True):
    """The real CLI in its own process group (killed whole if a test fails midway)."""
    proc = subprocess.Popen(
        [*CLI, str(src), str(out), *FLAGS, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    if not wait:
        return proc
    try:
        text, _ = proc.communicate(timeout=120)
    finally:
        _reap(proc)
    return proc.returncode, text.decode()


def _reap(proc: subprocess.Popen) -> None:
    """Kill what is left of ``proc``'s process group and wait for it: no process outlives
    the test."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="module")
def images(tmp_path_factory, data_dir) -> Path:
    root = tmp_path_factory.mktemp("commit-ds")
    for cls in ("ants", "bees"):
        (root / cls).mkdir()
        for p in sorted((ANTS_BEES / "train" / cls).glob("*.jpg"))[: N_IMAGES // 2]:
            shutil.copy(p, root / cls / p.name)
    shutil.copy(ANTS_BEES / "train/ants/imageNotFound.gif", root / "ants" / "imageNotFound.gif")
    return root


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("commit-ref") / "ref.zarr"
    rc, text = _run(images, out)
    assert rc == 1 and "imageNotFound.gif" in text  # one input failed: exit 1
    s = open_store(out)
    assert s.complete and len(s) == N_IMAGES and len(s.errors) == 1
    tree = _tree(out)
    assert LOCK_NAME not in tree  # released at the end
    return tree


def _resume_and_compare(images: Path, out: Path, reference: dict[str, bytes]) -> None:
    rc, text = _run(images, out, "--resume")
    assert rc == 1, text  # the GIF failed (in this run or before): exit 1, store complete
    assert _tree(out) == reference
    rec = _record(out)
    assert rec["progress"] == {"inputs_done": 25, "samples": N_IMAGES, "complete": True}


# kills placed exactly (FREQDATA_TEST_KILL_AT): `data` = rows written, record not;
# `record` = record written, derived statistics not; `arrays` = a new store's first record
# written, its arrays not. Commit 1 is the creation, 11 the finish.
@pytest.mark.parametrize("point", ["arrays:1", "data:1", "record:1", "data:4", "record:4",
                                   "data:11", "record:11"])
def test_sigkill_at_a_commit_stage_then_resume_is_identical(images, reference, tmp_path, point):
    out = tmp_path / "k.zarr"
    rc, _ = _run(images, out, env={KILL_ENV: point})
    assert rc == -signal.SIGKILL
    assert (out / LOCK_NAME).exists()  # the dead writer's lock stays: resume takes it over
    stage, k = point.split(":")
    committed = int(k) - 1 if stage == "data" else int(k)  # records written before the kill
    inputs = [0, *range(3, 25, 3), 25, 25][committed - 1] if committed else None
    if inputs is not None:
        assert _record(out)["progress"]["inputs_done"] == inputs
    _resume_and_compare(images, out, reference)


def test_sigkill_after_commits_and_at_random_times(images, reference, tmp_path):
    """Kill after the 1st and 4th commit (as soon as the record shows it) and at two seeded
    random delays, each followed by a resume; and a chain: kill the resume too."""
    rng = random.Random(12)
    for trial, when in enumerate([("commit", 1), ("commit", 4),
                                  *(("delay", rng.uniform(0.5, 4.0)) for _ in range(2))]):
        out = tmp_path / f"k{trial}.zarr"
        proc = _run(images, out, wait=False)
        try:
            if when[0] == "commit":
                deadline = time.time() + 60
                while time.time() < deadline and _record(out).get("progress", {}).get(
                    "inputs_done", 0
                ) < 3 * when[1]:
                    time.sleep(0.002)
            else:
                time.sleep(when[1])
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            _reap(proc)
        _resume_and_compare(images, out, reference)
    out = tmp_path / "chain.zarr"
    for point in ("data:3", "record:2"):  # the first run, then its resume, killed
        rc, _ = _run(images, out, "--resume", env={KILL_ENV: point})
        assert rc == -signal.SIGKILL
    _resume_and_compare(images, out, reference)


def test_statistics_survive_a_kill_exactly(images, reference, tmp_path):
    """The record's statistics are the store's: count/mean/m2 after kill + resume equal the
    uninterrupted run's bit for bit, and equal a float64 two-pass over all blocks."""
    out = tmp_path / "k.zarr"
    rc, _ = _run(images, out, env={KILL_ENV: "record:5"})
    assert rc == -signal.SIGKILL
    _resume_and_compare(images, out, reference)
    s = open_store(out)
    rec = _record(out)["stats"]
    flat = np.concatenate(
        [s[i][0].reshape(24, -1).astype(np.float64) for i in range(len(s))], axis=1
    )
    np.testing.assert_array_equal(rec["count"], np.full(24, flat.shape[1], dtype=np.float64))
    np.testing.assert_allclose(rec["mean"], flat.mean(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rec["m2"], ((flat - flat.mean(1, keepdims=True)) ** 2).sum(1),
                               rtol=1e-10)
    np.testing.assert_array_equal(s.group["stats"]["mean"][:], rec["mean"])  # derived copy


def test_second_writer_is_refused(images, reference, tmp_path):
    """A writer stopped (SIGSTOP) while it holds OUT: --overwrite, --resume and a new encode
    into OUT from other processes exit 1 naming its pid and host; it then finishes intact."""
    out = tmp_path / "busy.zarr"
    first = _run(images, out, wait=False)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and _record(out).get("progress", {}).get(
            "inputs_done", 0
        ) < 3:
            time.sleep(0.002)
        os.kill(first.pid, signal.SIGSTOP)
        for flag in ("--overwrite", "--resume"):
            rc, text = _run(images, out, flag)
            assert rc == 1, text
            flat = " ".join(text.split())
            assert f"pid {first.pid}" in flat and socket.gethostname() in flat, text
            assert LOCK_NAME in flat  # says which file to delete if the holder is gone
        os.kill(first.pid, signal.SIGCONT)
        text, _ = first.communicate(timeout=120)
        assert first.returncode == 1, text  # finished (one input failed)
    finally:
        _reap(first)
    assert _tree(out) == reference


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_lock_is_taken_over_and_foreign_one_refused(images, reference, tmp_path):
    out = tmp_path / "stale.zarr"
    out.mkdir()
    lock = {"pid": _dead_pid(), "host": socket.gethostname(), "started": time.time() - 60}
    (out / LOCK_NAME).write_text(json.dumps(lock))
    rc, text = _run(images, out, "--resume")
    assert rc == 1 and "stale lock" in text and f"pid {lock['pid']}" in " ".join(text.split())
    assert _tree(out) == reference
    (out / LOCK_NAME).write_text(json.dumps({**lock, "host": "another-host"}))
    rc, text = _run(images, out, "--overwrite")
    assert rc == 1 and "another-host" in text and "being written" in text
    assert _tree(out) == {**reference, LOCK_NAME: (out / LOCK_NAME).read_bytes()}


def test_writer_lock_in_process(images, tmp_path):
    """The API: a second writer on a held store is refused; ``with`` and finish release."""
    from freqdata.job import EncodeOptions
    from freqdata.sources import list_sources

    spec = EncodeOptions().spec(list_sources(images))
    out = tmp_path / "s.zarr"
    with StoreWriter.create(out, spec) as w:
        assert (out / LOCK_NAME).exists()
        with pytest.raises(StoreBusyError, match=f"pid {os.getpid()}"):
            StoreWriter.resume(out, spec)
        with pytest.raises(StoreBusyError):
            StoreWriter.create(out, spec, overwrite=True)
        assert w.progress.samples == 0
    assert not (out / LOCK_NAME).exists()
    w = StoreWriter.resume(out, spec)
    w.finish()
    assert not (out / LOCK_NAME).exists() and open_store(out).complete


# --------------------------------------------------------------------------- masks

MASKS_VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"
MASK_SCRIPT = """
import sys
from freqdata.masks import encode_masks, load_coco
ids = sorted(int(im["id"]) for im in load_coco(sys.argv[1])["images"])[:12]
encode_masks(sys.argv[1], sys.argv[2], image_ids=ids, weak=(8,), batch_images=2,
             resume=sys.argv[3] == "resume")
"""


def _masks(out: Path, mode: str, wait: bool = True, point: str = ""):
    proc = subprocess.Popen(
        [sys.executable, "-c", MASK_SCRIPT, str(MASKS_VAL), str(out), mode],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, KILL_ENV: point} if point else None,
    )
    if not wait:
        return proc
    try:
        text, _ = proc.communicate(timeout=120)
    finally:
        _reap(proc)
    assert proc.returncode == (-signal.SIGKILL if point else 0), text.decode()


def test_mask_encoder_sigkill_then_resume_is_identical(tmp_path, data_dir):
    ref = tmp_path / "ref.zarr"
    _masks(ref, "new")
    for trial, images_done in enumerate((4,)):
        out = tmp_path / f"m{trial}.zarr"
        proc = _masks(out, "new", wait=False)
        try:
            deadline = time.time() + 60
            while time.time() < deadline and _record(out).get("progress", {}).get(
                "inputs_done", 0
            ) < images_done:
                time.sleep(0.002)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            _reap(proc)
        assert not _record(out)["progress"]["complete"]
        _masks(out, "resume")
        assert _tree(out) == _tree(ref)
    for point in ("data:3", "record:8"):  # 8 commits: start, 6 batches of 2 images, finish
        out = tmp_path / f"{point.replace(':', '-')}.zarr"
        _masks(out, "new", point=point)
        _masks(out, "resume")
        assert _tree(out) == _tree(ref)


# --------------------------------------------------------------------------- RGB stores

RGB_SCRIPT = """
import sys
from freqdata.store.rgb import encode_rgb
encode_rgb(sys.argv[1], sys.argv[2], "72:64", batch=4, resume=sys.argv[3] == "resume")
"""


def test_rgb_store_sigkill_then_resume_is_identical(images, tmp_path):
    """The RGB store goes through the same writer: killed at a commit stage, resumed, it
    equals the uninterrupted store file for file."""

    def rgb(out: Path, mode: str, point: str = "") -> int:
        env = {**os.environ, KILL_ENV: point} if point else None
        proc = subprocess.run([sys.executable, "-c", RGB_SCRIPT, str(images), str(out), mode],
                              capture_output=True, env=env, start_new_session=True, timeout=120)
        return proc.returncode

    assert rgb(tmp_path / "ref.zarr", "new") == 0
    for point in ("data:3", "record:5"):
        out = tmp_path / f"{point.replace(':', '-')}.zarr"
        assert rgb(out, "new", point) == -signal.SIGKILL
        assert rgb(out, "resume") == 0
        assert _tree(out) == _tree(tmp_path / "ref.zarr")
