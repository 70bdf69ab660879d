"""One writer per store: the lock file ``OUT/.freqdata-lock``.

A writer (create, overwrite or resume) holds the lock from before it touches anything in
``OUT`` until it finishes, fails or is closed. The lock file is a small JSON record
``{pid, host, started, command}`` that appears complete and already locked: it is written to
a private temporary file, ``flock``-ed, then hard-linked into place (``link`` fails if a lock
exists, like ``O_CREAT | O_EXCL``). A second writer is refused with :class:`StoreBusyError`
naming the holder.

A lock is *stale* when its process is gone: its ``flock`` is free (the kernel drops it when
the process dies, ``kill -9`` included) and its pid is not alive on this host. A stale lock
is taken over (the temporary file atomically replaces it) and the takeover is logged; a lock
of another host is never taken over (its pid cannot be checked from here), its message says
how to clear it by hand. Local paths only: an fsspec URL (``memory://``, ``s3://``…) has no
lock (object stores have no exclusive create that freqdata could rely on); a ``file://`` URL
is locked like its local path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freqdata.errors import StoreError

LOCK_NAME = ".freqdata-lock"
log = logging.getLogger("freqdata.store")


class StoreBusyError(StoreError):
    """Another process is writing the store (or left a lock that cannot be proven stale)."""


def local_path(path: str | Path) -> Path | None:
    """The local directory of a store path or ``file://`` URL; None for other URLs."""
    s = str(path)
    if s.startswith("file://"):
        return Path(s[len("file://") :])
    if "://" in s:
        return None
    return Path(s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _describe(info: dict[str, Any]) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} (started {when})"


@dataclass
class StoreLock:
    """A held lock: the lock file's path, its open descriptor (holding ``flock``) and what it
    says. ``took_over``: the stale holder's record when this lock replaced one, else None."""

    path: Path
    fd: int
    info: dict[str, Any]
    took_over: dict[str, Any] | None = None

    def release(self) -> None:
        """Remove the lock file (if it is still this lock) and drop the ``flock``."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = -1


def _flock(fd: int) -> bool:
    """Try an exclusive ``flock``: True if taken, False if held elsewhere, True where the
    file system has no ``flock`` (then the pid check alone decides)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK / EOPNOTSUPP on some network file systems
        return True
    return True


def acquire(store: str | Path) -> StoreLock | None:
    """Take the writer lock of the store at ``store`` (its directory is created if needed).

    Returns None for URLs without a local path (no lock). Raises :class:`StoreBusyError` if
    another live process holds it.
    """
    root = local_path(store)
    if root is None:
        return None
    root.mkdir(parents=True, exist_ok=True)
    lock = root / LOCK_NAME
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
        "command": " ".join(sys.argv)[:500],
    }
    tmp = root / f"{LOCK_NAME}.{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _flock(fd)  # before writing: see _remove_dead_temps
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        for _ in range(20):  # a lock vanishing under us (released meanwhile): try again
            try:
                os.link(tmp, lock)
            except FileExistsError:
                pass
            except FileNotFoundError:  # the holder removed our temporary file as dead
                raise StoreBusyError(f"{root} is being written by another freqdata process "
                                     f"(it holds {lock})") from None
            else:
                os.unlink(tmp)
                _remove_dead_temps(root)
                return StoreLock(lock, fd, info)
            stale = _examine(lock)
            if stale is None:
                continue
            holder, their_fd = stale
            try:
                os.replace(tmp, lock)  # we hold their flock: nobody else can be here
            finally:
                os.close(their_fd)
            _remove_dead_temps(root)
            log.warning("freqdata: took over the stale lock of %s on %s", _describe(holder),
                        root)
            return StoreLock(lock, fd, info, took_over=holder)
        raise StoreBusyError(f"{root}: could not take its lock {lock} (it keeps changing)")
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_dead_temps(root: Path) -> None:
    """Delete temporary lock files of processes killed while taking a lock (their
    ``flock`` is free), so they do not stay in the store."""
    for p in root.glob(f"{LOCK_NAME}.*"):
        try:
            fd = os.open(p, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live process is taking the lock right now (it will fail: we hold it)
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def _examine(lock: Path) -> tuple[dict[str, Any], int] | None:
    """Look at an existing lock: raise :class:`StoreBusyError` if it is live, return its
    record and a descriptor holding its ``flock`` if it is stale, None if it vanished."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return None
    keep = False
    try:
        locked = _flock(fd)
        try:
            if os.stat(lock).st_ino != os.fstat(fd).st_ino:
                return None  # replaced or removed meanwhile
        except FileNotFoundError:
            return None
        raw = os.pread(fd, 1 << 16, 0)
        try:
            holder = json.loads(raw)
            assert isinstance(holder, dict)
        except (ValueError, AssertionError):
            holder = {}
        here = holder.get("host") == socket.gethostname()
        pid = holder.get("pid")
        if locked and here and isinstance(pid, int) and not _alive(pid):
            keep = True
            return holder, fd
        how = (
            f"if no freqdata process of {_describe(holder)} is writing it, delete {lock}"
            if holder
            else f"delete {lock} if no freqdata process is writing it"
        )
        raise StoreBusyError(
            f"{lock.parent} is being written by another freqdata process: "
            f"{_describe(holder)}; wait for it to finish, or, {how}"
        )
    finally:
        if not keep:
            os.close(fd)


@contextlib.contextmanager
def held(store: str | Path) -> Iterator[StoreLock | None]:
    """``with held(OUT):`` — the writer lock of ``OUT`` for the block (see :func:`acquire`)."""
    lock = acquire(store)
    try:
        yield lock
    finally:
        if lock:
            lock.release()
