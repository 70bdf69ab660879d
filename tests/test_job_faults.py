"""Encode under faults, as they happen: real worker processes killed with SIGKILL, the
encoder itself killed, and inputs that are not images at all (FIFOs, devices, link loops,
dangling links, names that are not UTF-8, files over --max-bytes), plus what SRC may be."""

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
from conftest import ANTS_BEES

from freqdata import encode_image, open_store
from freqdata.errors import UsageError
from freqdata.job import WORKER_DIED, EncodeOptions, encode_images
from freqdata.sources import list_sources

CLI = [sys.executable, "-m", "freqdata.cli", "encode", "images"]
NON_UTF8 = os.fsdecode(b"caf\xe9.jpg")  # a Latin-1 file name: not valid UTF-8


def _images(n: int) -> list[Path]:
    files = sorted((ANTS_BEES / "train/ants").glob("*.jpg")) + sorted(
        (ANTS_BEES / "train/bees").glob("*.jpg")
    )
    return files[:n]


def _class_folder(root: Path, per_class: int) -> Path:
    for cls in ("ants", "bees"):
        (root / cls).mkdir(parents=True)
        for p in sorted((ANTS_BEES / "train" / cls).glob("*.jpg"))[:per_class]:
            shutil.copy(p, root / cls / p.name)
    return root


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _workers(pid: int) -> list[int]:
    return [c for c in _children(pid) if "freqdata.pool" in _cmdline(c)]


def _inputs_done(store: Path) -> int:
    try:
        attrs = json.loads((store / "zarr.json").read_text())["attributes"]["freqdata"]
        return attrs["progress"]["inputs_done"]
    except (OSError, ValueError, KeyError):
        return 0


def _in_group(pgid: int) -> list[str]:
    """Live (not zombie) processes of process group ``pgid``: ``"pid state cmdline"``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pid = int(stat.parent.name)
            found.append(f"{pid} {fields[0]} {_cmdline(pid)}")
    return found


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc, FIFOs and PR_SET_PDEATHSIG"
)


def test_killed_workers_cost_nothing_the_run_goes_on(tmp_path, data_dir):
    """SIGKILL a real worker three times mid-run (what the OOM killer does): the run finishes,
    every input is encoded (the killed workers' inputs retried alone), exit 0."""
    files = _images(60)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in files))
    out = tmp_path / "k.zarr"
    flags = ["--workers", "2", "--batch-size", "4", "--quiet", "--path", "pixels"]
    proc = subprocess.Popen([*CLI, str(listing), str(out), *flags], stderr=subprocess.PIPE)
    killed: list[int] = []
    deadline = time.time() + 60
    while len(killed) < 3 and proc.poll() is None and time.time() < deadline:
        done = _inputs_done(out)
        workers = [w for w in _workers(proc.pid) if w not in killed]
        if workers and done >= 8 * (len(killed) + 1):  # progress between kills
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])
        time.sleep(0.02)
    _, err = proc.communicate(timeout=120)
    assert len(killed) == 3, "the run ended before three workers could be killed"
    assert proc.returncode == 0, err.decode()
    s = open_store(out)
    assert s.complete and len(s) == len(files) and s.errors == []
    assert list(s.paths) == [str(p) for p in files]  # absolute in the list: kept as written
    for i in (0, 17, 33, len(files) - 1):
        np.testing.assert_array_equal(s[i][0], encode_image(files[i], path="pixels"))


def test_a_worker_killed_twice_on_one_input_is_recorded(tmp_path, data_dir):
    """An input whose worker dies, and whose retry dies too, is recorded; the others encode."""
    from hostile import encode_or_crash

    from freqdata.job import _ordered_map

    files = [str(p) for p in _images(6)]
    files[2] = str(tmp_path / "crash.jpg")  # kills every worker that takes it
    out = list(_ordered_map(encode_or_crash, files, 2, EncodeOptions()))
    assert out[2] == WORKER_DIED
    for k in (0, 1, 3, 4, 5):
        np.testing.assert_array_equal(out[k][0], encode_image(files[k]))


def test_killed_encoder_leaves_no_process_behind(tmp_path, data_dir):
    """SIGKILL the CLI mid-run (its own process group): none of its workers survives."""
    root = _class_folder(tmp_path / "ds", per_class=30)
    out = tmp_path / "o.zarr"
    flags = ["--workers", "2", "--batch-size", "2", "--quiet", "--path", "pixels"]
    proc = subprocess.Popen(
        [*CLI, str(root), str(out), *flags],
        start_new_session=True,  # its own process group: every descendant is findable
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline and (len(_workers(proc.pid)) < 2 or _inputs_done(out) < 4):
        time.sleep(0.02)
    assert len(_workers(proc.pid)) == 2 and proc.poll() is None, "no mid-run moment seen"
    assert len(_in_group(proc.pid)) >= 3  # the encoder and its workers are seen
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = _in_group(proc.pid)
    deadline = time.time() + 10
    while left and time.time() < deadline:
        time.sleep(0.1)
        left = _in_group(proc.pid)
    assert left == [], left


def _hostile_inputs(folder: Path) -> dict[str, str]:
    """Inputs that are not image files, named like images; {name: expected reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.jpg")
    (folder / "loop.jpg").symlink_to("loop.jpg")
    (folder / "dangling.jpg").symlink_to("missing.jpg")
    (folder / "dev.jpg").symlink_to("/dev/zero")
    return {
        "fifo.jpg": "FIFO",
        "loop.jpg": "symbolic link loop",
        "dangling.jpg": "dangling symbolic link",
        "dev.jpg": "character device",
    }


def test_inputs_that_are_not_files_are_recorded_in_a_list(tmp_path, data_dir):
    """A list naming a FIFO, /dev/zero, a directory, a link loop and a dangling link: each is
    recorded (never read: no hang, no MemoryError), the real images are encoded."""
    expected = _hostile_inputs(tmp_path / "bad")
    good = _images(2)
    lines = [str(good[0]), "/dev/zero", "bad", *(f"bad/{n}" for n in expected), str(good[1])]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(lines) + "\n")
    summary = encode_images(listing, tmp_path / "s.zarr")
    s = open_store(tmp_path / "s.zarr")
    assert summary.encoded == len(s) == 2 and summary.failed == len(lines) - 2
    reasons = {e["path"]: e["reason"] for e in s.errors}
    assert "character device" in reasons["/dev/zero"]
    assert "directory" in reasons["bad"]
    for name, fragment in expected.items():
        assert fragment in reasons[f"bad/{name}"], reasons
    np.testing.assert_array_equal(s[1][0], encode_image(good[1]))


def test_folder_mode_lists_what_it_cannot_read(tmp_path, data_dir):
    """Folder mode: entries with an image suffix that are not regular files (FIFO, link loop,
    dangling link, a device) are inputs that fail with a reason, not silently skipped; a
    non-UTF-8 file name is encoded and stored escaped; other suffixes are not inputs."""
    root = _class_folder(tmp_path / "ds", per_class=2)
    expected = _hostile_inputs(root / "ants")
    shutil.copy(_images(1)[0], root / "bees" / NON_UTF8)
    (root / "bees" / "notes.txt").write_text("not an input")
    src = list_sources(root)
    assert len(src) == 2 + len(expected) + 3
    summary = encode_images(src, tmp_path / "s.zarr", workers=1)
    s = open_store(tmp_path / "s.zarr")
    assert summary.encoded == len(s) == 5 and summary.failed == len(expected)
    assert {e["path"] for e in s.errors} == {f"ants/{n}" for n in expected}
    assert "bees/caf\\xe9.jpg" in list(s.paths)  # the documented escaped form
    i = list(s.paths).index("bees/caf\\xe9.jpg")
    np.testing.assert_array_equal(s[i][0], encode_image(_images(1)[0]))
    assert s.labels[i] == 1


def test_rgb_stores_check_their_inputs_the_same_way(tmp_path, data_dir):
    """The RGB store encoder reads inputs through the same checks: non-files are recorded
    (never read), names are stored relative to SRC and escaped."""
    from freqdata.store.rgb import encode_rgb
    from freqdata.trainers.rgb import RGBStore

    root = _class_folder(tmp_path / "ds", per_class=1)
    expected = _hostile_inputs(root / "ants")
    shutil.copy(_images(1)[0], root / "bees" / NON_UTF8)
    summary = encode_rgb(root, tmp_path / "rgb.zarr", "72:64")
    s = RGBStore(tmp_path / "rgb.zarr")
    assert summary["encoded"] == len(s) == 3 and summary["failed"] == len(expected)
    reasons = {e["path"]: e["reason"] for e in s.errors}
    for name, fragment in expected.items():
        assert fragment in reasons[f"ants/{name}"], reasons
    assert "bees/caf\\xe9.jpg" in list(s.paths)


def test_non_utf8_names_in_a_list_file_are_read(tmp_path, data_dir):
    """A list file holding a name that is not UTF-8 (its raw bytes) reads the file it names."""
    shutil.copy(_images(1)[0], tmp_path / NON_UTF8)
    (tmp_path / "list.txt").write_bytes(os.fsencode(NON_UTF8) + b"\n")
    encode_images(tmp_path / "list.txt", tmp_path / "s.zarr")
    s = open_store(tmp_path / "s.zarr")
    assert list(s.paths) == ["caf\\xe9.jpg"] and s.errors == []


def test_max_bytes_refuses_large_files_unread(tmp_path, data_dir):
    files = _images(3)
    sizes = [p.stat().st_size for p in files]
    limit = sorted(sizes)[1]  # the largest file is over it
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in files))
    summary = encode_images(listing, tmp_path / "s.zarr", EncodeOptions(max_bytes=limit))
    big = int(np.argmax(sizes))
    assert summary.failed == 1 and summary.errors[0]["index"] == big
    assert f"max_bytes={limit}" in summary.errors[0]["reason"]
    with pytest.raises(UsageError, match="max_bytes"):
        encode_images(listing, tmp_path / "t.zarr", EncodeOptions(max_bytes=0))


def test_src_may_be_one_image_not_an_empty_folder(tmp_path, data_dir):
    one = _images(1)[0]
    src = list_sources(one)
    assert src.paths == [str(one)] and src.names == [one.name] and src.labels == [-1]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(UsageError, match="no input"):
        list_sources(tmp_path / "empty")
    (tmp_path / "photo").write_bytes(one.read_bytes())  # binary, no image suffix
    with pytest.raises(UsageError, match="SRC must be"):
        list_sources(tmp_path / "photo")
    res = subprocess.run([*CLI, str(tmp_path / "empty"), str(tmp_path / "e.zarr")],
                         capture_output=True)
    assert res.returncode == 2 and b"no input" in res.stderr
    assert not (tmp_path / "e.zarr").exists()


class _Stop(Exception):
    pass


def _stop_after_first_batch(done: int, total: int, failed: int) -> None:
    if done:
        raise _Stop


def test_resume_does_not_depend_on_how_src_is_spelled(tmp_path, data_dir, monkeypatch):
    """A store begun from a relative SRC resumes from the absolute one (and the reverse
    spelling gives the same inputs digest); the result is byte-identical to one run."""
    _class_folder(tmp_path / "ds", per_class=3)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(_Stop):
        encode_images("ds", "k.zarr", batch_size=2, on_progress=_stop_after_first_batch)
    assert not open_store("k.zarr").complete
    encode_images(tmp_path / "ds", "k.zarr", batch_size=2, resume=True)
    encode_images("./ds/", "ref.zarr", batch_size=2)

    def tree(store: str) -> dict[str, bytes]:
        return {str(f.relative_to(store)): f.read_bytes() for f in Path(store).rglob("*")
                if f.is_file()}

    assert tree("k.zarr") == tree("ref.zarr")
    first = sorted(p.name for p in (tmp_path / "ds/ants").iterdir())[0]
    assert open_store("ref.zarr").paths[0] == f"ants/{first}"  # relative to SRC


def test_resume_with_nothing_left_exits_1_when_the_store_has_failures(tmp_path, data_dir):
    root = _class_folder(tmp_path / "ds", per_class=1)
    (root / "ants" / "text.jpg").write_text("not an image")
    cmd = [*CLI, str(root), str(tmp_path / "s.zarr"), "--workers", "0", "--quiet"]
    assert subprocess.run(cmd, capture_output=True).returncode == 1
    res = subprocess.run([*cmd, "--resume"], capture_output=True)
    assert res.returncode == 1, res.stderr.decode()
