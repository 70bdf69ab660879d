"""Worker processes that cannot take a run down: :func:`ordered_map`.

Each worker is a fresh Python interpreter (``python -c``, no fork of this process, no
forkserver, no resource tracker) talking to this process over two pipes of its own: it
receives ``(fn, item, arg)`` and sends back ``fn(item, arg)``, pickled. A worker runs its
inputs one at a time, in the order sent (at most :data:`PIPELINE` ahead of its results), so
this process always knows which input a worker was on:

* a worker that dies (a segfault in a decoder, SIGKILL by the out-of-memory killer) costs
  only the input it was on: a new worker replaces it, that input is retried once alone in a
  fresh worker (one that ran nothing before), and if that worker dies too the input's result
  is the ``died`` value; inputs sent to it but not started go back in line, and every other
  input goes on;
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


def _read(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at end-of-file; reads no byte past them (so a pipe
    polled with ``select`` never hides a frame in a read-ahead buffer)."""
    chunks = []
    while n > 0:
        chunk = os.read(f.fileno(), min(n, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv(f: BinaryIO) -> tuple[bool, Any]:
    """``(True, object)``, or ``(False, None)`` at end-of-file (the other side is gone)."""
    head = _read(f, _HEADER.size)
    if len(head) < _HEADER.size:
        return False, None
    (n,) = _HEADER.unpack(head)
    data = _read(f, n)
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
    """One worker process, its two pipes, and the inputs sent to it (``jobs``, indices, in
    the order it runs them: ``jobs[0]`` is the one it is on)."""

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
        self.jobs: deque[int] = deque()
        self.fresh = True  # has been sent nothing yet
        self.solo = False  # runs a retry: gets nothing else until it is done
        self.alive = self._send(sys.path)

    def _send(self, obj: Any) -> bool:
        try:
            _send(self.tx, obj)
        except BrokenPipeError:
            return False
        return True

    def give(self, job: int, fn: Callable, item: Any, arg: Any) -> None:
        """Send one input (if the worker is gone, that shows when its results are read)."""
        self.jobs.append(job)
        self.fresh = False
        self.alive = self.alive and self._send((fn, item, arg))

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


PIPELINE = 2
"""Inputs sent to a worker ahead of its results, so it never waits while this process
commits; only the first of them is being run when a worker dies."""


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
    retry: deque[int] = deque()  # their worker died on them: run once more, alone
    retried: set[int] = set()
    results: dict[int, Any] = {}
    nxt = 0
    clean = False
    try:
        while nxt < n:
            for w in pool:
                while w.alive and len(w.jobs) < (1 if w.solo else PIPELINE):
                    if w.fresh and retry:
                        j, w.solo = retry.popleft(), True
                    elif not w.solo and todo and todo[0] < nxt + window:
                        j = todo.popleft()
                    else:
                        break
                    w.give(j, fn, items[j], arg)
            if nxt in results:
                yield results.pop(nxt)
                nxt += 1
                continue
            busy = [w for w in pool if w.jobs or not w.alive]
            if not busy:  # cannot happen: input nxt is always sent, running or done
                raise RuntimeError(f"worker pool stalled at input {nxt}")
            ready = select.select(busy, [], [])[0]  # a dead worker's pipe reads end-of-file
            for k, w in enumerate(pool):
                if w not in ready:
                    continue
                ok, reply = _recv(w.rx)
                if ok:
                    done, value = reply
                    if not done:
                        raise WorkerError(f"{fn.__name__} raised in a worker:\n{value}")
                    results[w.jobs.popleft()] = value
                    w.solo = w.solo and bool(w.jobs)
                    continue
                w.stop(kill=True)  # it died on jobs[0]; the others were never started
                pool[k] = _Worker()
                if w.jobs:
                    culprit = w.jobs.popleft()
                    todo = deque(sorted([*w.jobs, *todo]))  # in order: the window needs it
                    if culprit in retried:
                        results[culprit] = died
                    else:
                        retried.add(culprit)
                        retry.append(culprit)
        clean = True
    finally:
        for w in pool:
            w.stop(kill=not clean)

