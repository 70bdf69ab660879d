"""Worker processes that cannot take a run down: :func:`ordered_map`.

Each worker is a fresh Python interpreter (``python -c``, no fork of this process, no
forkserver, no resource tracker) talking to this process over two pipes of its own: it
receives ``(fn, item, arg)`` and sends back ``fn(item, arg)``, pickled. Each worker holds one
input at a time, so this process always knows which input a worker held:

* a worker that dies (a segfault in a decoder, SIGKILL by the out-of-memory killer) costs
  only the input it held: a new worker replaces it, the input is retried once alone in a
  fresh worker (one that ran nothing before), and if that worker dies too the input's result
  is the ``died`` value; every other input goes on;
* workers die with this process: on Linux each worker asks the kernel for SIGKILL when its
  parent dies (``PR_SET_PDEATHSIG``); everywhere, a worker exits at end-of-file of its command
  pipe, whose write end only this process holds. Nothing is left running when the run ends,
  fails or is killed;
* workers ignore SIGINT, so Ctrl-C interrupts this process only, which then stops them.

``fn`` must be importable by name in the workers (a module-level function; this process's
``sys.path`` is sent to each worker first). The pool's processes are children of the thread
that iterates :func:`ordered_map` (consume it from a thread that outlives the run).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

_HEADER = struct.Struct("<Q")
_BOOT = "import sys; from freqdata.pool import serve; serve(*map(int, sys.argv[1:]))"
PR_SET_PDEATHSIG = 1


class WorkerError(RuntimeError):
    """``fn`` raised in a worker (a bug: encode functions return their failures)."""


def _send(f: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(_HEADER.pack(len(data)) + data)
    f.flush()


def _recv(f: BinaryIO) -> tuple[bool, Any]:
    """``(True, object)``, or ``(False, None)`` at end-of-file (the other side is gone)."""
    head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return False, None
    (n,) = _HEADER.unpack(head)
    data = f.read(n)
    if len(data) < n:
        return False, None
    return True, pickle.loads(data)


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)


def serve(rfd: int, wfd: int, parent: int) -> None:
    """A worker's main loop: read ``(fn, item, arg)``, send back ``(True, fn(item, arg))`` or
    ``(False, traceback)``; return at end-of-file of the command pipe."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with os.fdopen(rfd, "rb") as rx, os.fdopen(wfd, "wb") as tx:
        ok, path = _recv(rx)
        if not ok:
            return
        sys.path[:] = path
        while True:
            ok, job = _recv(rx)
            if not ok:
                return
            fn, item, arg = job
            try:
                reply = (True, fn(item, arg))
            except Exception:
                reply = (False, traceback.format_exc())
            _send(tx, reply)


class _Worker:
    """One worker process, its two pipes, and the input it holds (``job``, an index)."""

    def __init__(self) -> None:
        to_r, to_w = os.pipe()  # non-inheritable: no other worker gets these ends
        from_r, from_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(to_r), str(from_w), str(os.getpid())],
            pass_fds=(to_r, from_w),
            stdin=subprocess.DEVNULL,
        )
        os.close(to_r)
        os.close(from_w)
        self.tx = os.fdopen(to_w, "wb")
        self.rx = os.fdopen(from_r, "rb")
        self.job: int | None = None
        self.fresh = True  # has run nothing yet
        self.alive = self.give_path()

    def give_path(self) -> bool:
        try:
            _send(self.tx, sys.path)
        except BrokenPipeError:
            return False
        return True

    def give(self, job: int, fn: Callable, item: Any, arg: Any) -> bool:
        """Send one input; false if the worker is gone (the input stays its job)."""
        self.job, self.fresh = job, False
        try:
            _send(self.tx, (fn, item, arg))
        except BrokenPipeError:
            self.alive = False
        return self.alive

    def fileno(self) -> int:
        return self.rx.fileno()

    def stop(self, *, kill: bool) -> None:
        """Close the pipes (the worker exits at end-of-file); SIGKILL it first if ``kill``."""
        if kill and self.proc.poll() is None:
            self.proc.kill()
        for f in (self.tx, self.rx):
            try:
                f.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def ordered_map(
    fn: Callable[[Any, Any], Any],
    items: Sequence[Any],
    arg: Any,
    workers: int,
    died: Any,
) -> Iterator[Any]:
    """``fn(item, arg)`` for each of ``items``, yielded in order, computed on ``workers``
    processes (at least 1); see the module docstring for what happens when one dies.

    At most ``4 * workers`` results are computed ahead of the one yielded next.
    Raises :class:`WorkerError` if ``fn`` raises.
    """
    n = len(items)
    window = 4 * max(1, workers)
    pool = [_Worker() for _ in range(min(max(1, workers), n))]
    todo = deque(range(n))  # not started yet
    retry: deque[int] = deque()  # their worker died: run once more, alone, in a fresh worker
    retried: set[int] = set()
    results: dict[int, Any] = {}
    nxt = 0
    clean = False
    try:
        while nxt < n:
            for k, w in enumerate(pool):
                if w.job is not None:
                    continue
                if not w.alive:  # gone before it got an input
                    w.stop(kill=True)
                    w = pool[k] = _Worker()
                if w.fresh and retry:
                    j = retry.popleft()
                elif todo and todo[0] < nxt + window:
                    j = todo.popleft()
                else:
                    continue
                w.give(j, fn, items[j], arg)
            if nxt in results:
                yield results.pop(nxt)
                nxt += 1
                continue
            busy = [w for w in pool if w.job is not None]
            ready = select.select(busy, [], [])[0] if all(w.alive for w in busy) else []
            for k, w in enumerate(pool):
                if w.job is None or (w.alive and w not in ready):
                    continue
                ok, reply = _recv(w.rx) if w.alive else (False, None)
                if ok:
                    done, value = reply
                    if not done:
                        raise WorkerError(f"{fn.__name__} raised in a worker:\n{value}")
                    results[w.job] = value
                    w.job = None
                    continue
                job = w.job
                w.stop(kill=True)
                pool[k] = _Worker()
                if job in retried:
                    results[job] = died
                else:
                    retried.add(job)
                    retry.append(job)
        clean = True
    finally:
        for w in pool:
            w.stop(kill=not clean)
