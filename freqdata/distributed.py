"""Encode images (and masks) on a Dask distributed cluster into one store, byte-identical to
one machine.

Masks (:func:`freqdata.masks.encode_masks` with ``scheduler``) use :func:`map_ordered`: the
workers encode batches of images, the client writes the results in input order (a few KB
per instance, small next to the rasterization and DCT work).

Images (:func:`encode_distributed`) use two rounds of Dask tasks, driven by the client
(docs/scale-out.md has the why):

1. **encode** — task ``t`` encodes inputs ``[base + t*K, base + (t+1)*K)`` and writes its
   samples into a private temporary group ``OUT/_dist/tNNNNNN`` (data arrays, per-sample
   statistics), then its manifest (which inputs encoded, failure reasons, ragged shapes) as
   the group's attributes, last: a group with a manifest is finished and is reused by
   ``resume``. The task returns the manifest and per-sample statistics (a few hundred bytes
   per sample) to the client.
2. **copy** — once the encode results are known for a prefix of the inputs, the client knows
   every sample's output row (failed inputs are not samples, so rows ≠ inputs). Each copy
   task owns whole storage objects of one output array (a shard of ``SHARD_SAMPLES`` rows for
   fixed cubes, a ``RAGGED_CHUNK`` chunk for ragged data), assembles them from the temporary
   groups and writes them. No two tasks ever write the same object.

Everything small is written by the client only: array shapes (resize), the index arrays
(labels, source_index, paths, ragged shape/offset), statistics and the attributes (progress,
error log). Statistics are folded in input order from the per-sample values, the same float64
operations as the single-process encoder, so the store is byte-identical to
:func:`freqdata.job.encode_images`. Progress is committed for the prefix of samples whose
objects are all written, like a single-process batch commit, so an interrupted store is
resumed (``resume=True``); the temporary groups are removed as their rows are committed.

A lost worker costs its running task: Dask reruns it elsewhere (tasks are idempotent);
``retries`` covers tasks that raise.
"""

from __future__ import annotations

import bisect
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from freqdata.job import WORKER_DIED, Damaged, EncodeOptions, EncodeSummary, encode_one
from freqdata.pool import ordered_map
from freqdata.sources import Sources, list_sources
from freqdata.stats import ChannelStats
from freqdata.store import StoreSpec, StoreWriter, exists
from freqdata.store.layout import compressors, writable

DIST = "_dist"
DEFAULT_TASK_INPUTS = 256
EncodeFn = Callable[[Any, EncodeOptions], "tuple[np.ndarray, ...] | str"]


def _join(root: str, *keys: str) -> str:
    return "/".join([root.rstrip("/"), *keys])


def _task_key(t: int) -> str:
    return f"t{t:06d}"


def _encode_task(
    out: str,
    t: int,
    lo: int,
    paths: list[str],
    opts: EncodeOptions,
    parts: list[tuple[str, bool]],
    channels: int,
    encode_fn: EncodeFn | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Round 1 on a worker: encode ``paths`` (inputs ``lo…``) into ``OUT/_dist/tNNNNNN``.

    ``parts``: ``(name, fixed)`` per store part. Returns the manifest and the per-sample
    statistics ``(k, 3, C)`` (n, mean, m2).
    """
    fn = encode_fn or encode_one  # reads local paths and URLs, never raises
    results = [fn(p, opts) for p in paths]
    return _write_task(out, t, lo, results, parts, channels)


def _encode_isolated(
    out: str,
    t: int,
    lo: int,
    paths: list[str],
    opts: EncodeOptions,
    parts: list[tuple[str, bool]],
    channels: int,
    encode_fn: EncodeFn | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Round 1 on the client, for a task that killed its workers (a crashing decoder):
    every input in a child process, like the single-process encoder, so the culprit is
    recorded as :data:`freqdata.job.WORKER_DIED` and the others are encoded."""
    fn = encode_fn or encode_one
    results = list(ordered_map(fn, paths, opts, 1, WORKER_DIED))
    return _write_task(out, t, lo, results, parts, channels)


def _write_task(
    out: str,
    t: int,
    lo: int,
    results: list[Any],
    parts: list[tuple[str, bool]],
    channels: int,
) -> tuple[dict[str, Any], np.ndarray]:
    """Write one encode task's results (part tuples or reasons) and its manifest, last."""
    ok: list[int] = []
    errors: list[list[Any]] = []
    damaged: list[list[Any]] = []  # stored despite damage (lenient): the warning log
    cubes: list[tuple[np.ndarray, ...]] = []
    for j, r in enumerate(results):
        if isinstance(r, str):
            errors.append([lo + j, r])
        else:
            ok.append(lo + j)
            cubes.append(r)
            if isinstance(r, Damaged):
                damaged.append([lo + j, r.warning])
    stats = np.zeros((len(cubes), 3, channels), dtype=np.float64)
    for k, r in enumerate(cubes):
        # C order, as the cube arrives from a process pool: ChannelStats.of's float sums
        # depend on the memory layout, and encode_images(workers>=1) sees pickled cubes
        st = ChannelStats.join([ChannelStats.of(np.ascontiguousarray(a)) for a in r])
        stats[k] = (st.n, st.mean, st.m2)
    g = zarr.open_group(_join(out, DIST, _task_key(t)), mode="w", zarr_format=3)
    shapes: dict[str, list[list[int]]] = {}
    for k, (name, fixed) in enumerate(parts):
        arrays = [r[k] for r in cubes]
        if fixed:
            data = np.stack(arrays) if arrays else None
            shape = data.shape if data is not None else (0, 1, 1, 1)
            chunks = (max(1, min(len(arrays), 8)), *shape[1:])
        else:
            shapes[name] = [list(a.shape) for a in arrays]
            data = np.concatenate([a.ravel() for a in arrays]) if arrays else None
            shape = (0,) if data is None else data.shape
            chunks = (1 << 20,)
        arr = g.create_array(
            name, shape=shape, dtype=np.int16, chunks=chunks, compressors=compressors()
        )
        if data is not None:
            arr[...] = data
    g.create_array(
        "stats", shape=stats.shape, dtype=np.float64, chunks=(max(1, len(ok)), 3, channels)
    )
    if len(ok):
        g["stats"][...] = stats
    manifest = {
        "done": True,
        "lo": lo,
        "hi": lo + len(results),
        "ok": ok,
        "errors": errors,
        "warnings": damaged,
        "shapes": shapes,
        "raw_bytes": int(sum(a.nbytes for r in cubes for a in r)),
    }
    g.attrs["manifest"] = manifest  # written last: the task's commit marker
    return manifest, stats


def _load_task(out: str, t: int) -> tuple[dict[str, Any], np.ndarray] | None:
    """The manifest and statistics of a finished encode task, or None."""
    try:
        g = zarr.open_group(_join(out, DIST, _task_key(t)), mode="r", zarr_format=3)
        manifest = g.attrs.get("manifest")
        if not manifest or not manifest.get("done"):
            return None
        return manifest, g["stats"][...]
    except (FileNotFoundError, KeyError, zarr.errors.NodeNotFoundError):
        return None


# (task or -1 for "the output array itself", source start, source end, destination start)
Segment = tuple[int, int, int, int]


def _copy_task(out: str, target: str, part: str, lo: int, hi: int, segments: list[Segment]) -> int:
    """Round 2 on a worker: write positions ``[lo, hi)`` of ``OUT/target`` (whole objects)."""
    arr = zarr.open_group(out, mode="r+", zarr_format=3)[target]
    assert isinstance(arr, zarr.Array)
    arr = writable(arr)
    buf = np.zeros((hi - lo, *arr.shape[1:]), dtype=arr.dtype)
    for t, s0, s1, d0 in segments:
        if t < 0:
            src = arr[s0:s1]
        else:
            tmp = zarr.open_group(_join(out, DIST, _task_key(t)), mode="r", zarr_format=3)[part]
            src = tmp[s0:s1]
        buf[d0 - lo : d0 - lo + (s1 - s0)] = src
    arr[lo:hi] = buf
    return hi - lo


@dataclass
class _Stream:
    """One output array being assembled: where each position comes from, what is written."""

    part: str
    target: str
    unit: int  # positions per storage object
    committed: int  # positions already committed at start (resume)
    known: int = 0  # positions whose source is known
    segments: deque[Segment] = field(default_factory=deque)
    next_unit: int = 0  # next unit to submit
    done_units: set[int] = field(default_factory=set)
    done_upto: int = 0  # units [0, done_upto) written

    def __post_init__(self) -> None:
        self.known = self.committed
        self.next_unit = self.done_upto = self.committed // self.unit
        start = self.next_unit * self.unit
        if start < self.committed:  # partial object: its committed rows come from itself
            self.segments.append((-1, start, self.committed, start))

    def sources(self, lo: int, hi: int) -> list[Segment]:
        """Segments clipped to ``[lo, hi)`` (called with increasing ``lo``: drops the past)."""
        while (
            self.segments and self.segments[0][3] + self.segments[0][2] - self.segments[0][1] <= lo
        ):
            self.segments.popleft()
        out = []
        for t, s0, s1, d0 in self.segments:
            if d0 >= hi:
                break
            d1 = d0 + (s1 - s0)
            a, b = max(lo, d0), min(hi, d1)
            if a < b:
                out.append((t, s0 + a - d0, s0 + b - d0, a))
        return out

    def written(self) -> int:
        """Positions written contiguously from 0."""
        while self.done_upto in self.done_units:
            self.done_units.discard(self.done_upto)
            self.done_upto += 1
        return min(self.done_upto * self.unit, self.known)


def local_worker_env() -> Any:
    """Dask config for workers started here: without Dask's ``MALLOC_TRIM_THRESHOLD_``.

    Dask sets ``MALLOC_TRIM_THRESHOLD_=65536`` in new workers; any ``MALLOC_*`` variable
    turns off glibc's dynamic mmap threshold, so every cube-sized temporary is a fresh
    mmap (page faults): the encoder measured 2-3x slower (docs/scale-out.md).
    """
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return dask.config.set({"distributed.nanny.pre-spawn-environ": env})


@contextmanager
def connect(scheduler: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler``: an address (``tcp://host:8786``),
    ``local:N`` (a LocalCluster of N single-threaded worker processes, closed afterwards)
    or an existing ``Client``."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if isinstance(scheduler, str) and scheduler.startswith("local:"):
        n = int(scheduler.split(":", 1)[1])
        with (
            local_worker_env(),
            LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    with Client(scheduler) as client:
        yield client


def map_ordered(
    fn: Callable[..., Any],
    jobs: Iterable[tuple[Any, ...]],
    scheduler: Any,
    *,
    retries: int = 2,
    key: str = "freqdata-map",
) -> Iterator[Any]:
    """``fn(*job)`` for every job on a Dask cluster, yielded in job order.

    For work whose results are small enough to travel to the client, which writes them (the
    mask encoder). At most ``2 x`` the cluster's threads jobs are in flight, so memory stays
    bounded. A job whose worker was lost is rerun by Dask (``fn`` must be pure); one that kills
    workers repeatedly (``KilledWorker``) is computed here instead, so it cannot stop the run.
    """
    from distributed import KilledWorker

    run = uuid.uuid4().hex[:8]
    with connect(scheduler) as client:
        window = max(2, 2 * (sum(client.nthreads().values()) or 1))
        queue: deque[tuple[Any, tuple[Any, ...]]] = deque()
        it = iter(jobs)
        n = 0
        try:
            while True:
                while len(queue) < window:
                    job = next(it, None)
                    if job is None:
                        break
                    f = client.submit(fn, *job, key=f"{key}-{run}-{n}", retries=retries,
                                      pure=False)
                    queue.append((f, job))
                    n += 1
                if not queue:
                    return
                f, job = queue.popleft()
                try:
                    result = f.result()
                except KilledWorker:
                    result = fn(*job)
                f.release()
                yield result
        finally:
            client.cancel([f for f, _ in queue])


def _dist_plan(writer: StoreWriter, out: str, task_inputs: int) -> tuple[int, int]:
    """(base, K) of the task grid: recorded in ``OUT/_dist`` so resumes split the same way."""
    path = _join(out, DIST)
    try:
        g = zarr.open_group(path, mode="r", zarr_format=3)
        plan = g.attrs.get("plan")
        if plan:
            return int(plan["base"]), int(plan["task_inputs"])
    except (FileNotFoundError, zarr.errors.NodeNotFoundError):
        pass
    g = zarr.open_group(path, mode="w", zarr_format=3)
    base = writer.progress.inputs_done
    g.attrs["plan"] = {"base": base, "task_inputs": task_inputs}
    return base, task_inputs


def _remove_dist(out: str, *keys: str) -> None:
    """Delete ``OUT/_dist`` (or ``OUT/_dist/<keys>``) and everything under it."""
    from zarr.core.sync import sync

    g = zarr.open_group(out, mode="r+", zarr_format=3)
    sync(g.store_path.store.delete_dir("/".join([DIST, *keys])))


def encode_distributed(
    src: str | Path | Sources,
    out: str | Path,
    opts: EncodeOptions | None = None,
    *,
    scheduler: Any,
    resume: bool = False,
    overwrite: bool = False,
    task_inputs: int = DEFAULT_TASK_INPUTS,
    retries: int = 2,
    commit_every_s: float = 2.0,
    on_progress: Callable[[int, int, int], None] | None = None,
    encode_fn: EncodeFn | None = None,
) -> EncodeSummary:
    """:func:`freqdata.job.encode_images` on a Dask cluster; the same store, byte for byte.

    ``scheduler``: see :func:`connect`. ``out`` (and ``src``) may be fsspec URLs; every
    worker must reach them (object storage or a shared file system). ``task_inputs``: inputs
    per encode task (fixed for a store: a resume reuses the first run's value).
    ``encode_fn``: replaces :func:`freqdata.job.encode_one` on the workers (tests).
    ``on_progress(done, total, failed)``: inputs whose outcome is known, in order.
    """
    t_start = time.perf_counter()
    opts = opts or EncodeOptions()
    out = str(out)
    sources = src if isinstance(src, Sources) else list_sources(src)
    spec: StoreSpec = opts.spec(sources)
    resume = resume and exists(out)
    if resume:
        writer = StoreWriter.resume(out, spec)
    else:
        writer = StoreWriter.create(out, spec, overwrite=overwrite)
    with writer:  # holds the store's lock until the run ends, however it ends
        if not resume:
            _remove_dist(out)  # never reuse encode results of a replaced store
        return _run(writer, sources, spec, out, opts, scheduler, resume, task_inputs, retries,
                    commit_every_s, on_progress, encode_fn, t_start)


def _run(
    writer: StoreWriter,
    sources: Sources,
    spec: StoreSpec,
    out: str,
    opts: EncodeOptions,
    scheduler: Any,
    resume: bool,
    task_inputs: int,
    retries: int,
    commit_every_s: float,
    on_progress: Callable[[int, int, int], None] | None,
    encode_fn: EncodeFn | None,
    t_start: float,
) -> EncodeSummary:
    """The body of :func:`encode_distributed`, with the store's writer open."""
    n_inputs = len(sources)
    done0, rows0 = writer.progress.inputs_done, writer.progress.samples
    summary = EncodeSummary(out, n_inputs, resumed_from=done0)
    errors0 = len(writer.errors)
    if on_progress:
        on_progress(done0, n_inputs, len(writer.errors))
    base, k_inputs = _dist_plan(writer, out, task_inputs)
    parts = [(p.name, p.grid is not None) for p in spec.parts]
    streams: list[_Stream] = []
    for p in spec.parts:
        if p.grid is not None:
            streams.append(_Stream(p.name, p.name, writer.rows_per_object(p.name), rows0))
        else:
            target = f"{p.name}/data"
            end = writer.ragged_end(p.name, rows0)
            streams.append(_Stream(p.name, target, writer.rows_per_object(target), end))

    first = (done0 - base) // k_inputs if done0 < n_inputs else 0
    tasks = (
        [
            (t, base + t * k_inputs, min(n_inputs, base + (t + 1) * k_inputs))
            for t in range(first, -(-(n_inputs - base) // k_inputs))
        ]
        if done0 < n_inputs
        else []
    )

    # Samples of this run not committed yet, in order (trimmed at each commit).
    p_index: list[int] = []  # input index
    p_stats: list[np.ndarray] = []  # (3, C): n, mean, m2
    p_shapes: list[list[list[int]]] = []  # ragged parts: shape per part
    p_ends: list[list[int]] = [[] for _ in streams]  # end position per stream
    new_errors: list[dict[str, Any]] = []
    new_warnings: list[dict[str, Any]] = []
    logged = 0  # new_errors handed to the writer (a prefix: they are in input order)
    warned = 0  # new_warnings handed to the writer (likewise)
    integrated = 0  # tasks integrated (a prefix of ``tasks``)
    admitted = 0  # tasks loaded from a previous run or submitted (a prefix)
    cleaned = 0  # tasks whose temporary group was removed (a prefix)
    results: dict[int, tuple[dict[str, Any], np.ndarray]] = {}
    run = uuid.uuid4().hex[:8]
    last_commit = time.perf_counter()

    def inputs_consumed() -> int:
        return tasks[integrated - 1][2] if integrated else done0

    def integrate(manifest: dict[str, Any], st: np.ndarray) -> None:
        ok = manifest["ok"]
        skip = bisect.bisect_left(ok, done0)  # samples committed before this run
        for i, reason in manifest["errors"]:
            if i >= done0:
                new_errors.append({"index": i, "path": sources.names[i], "reason": reason})
        for i, reason in manifest.get("warnings", []):
            if i >= done0:
                new_warnings.append({"index": i, "path": sources.names[i], "reason": reason})
        t = tasks[integrated][0]
        for k, (s, (name, fixed)) in enumerate(zip(streams, parts, strict=True)):
            if fixed:
                lengths = [1] * len(ok)
            else:
                lengths = [int(np.prod(x)) for x in manifest["shapes"][name]]
            src0 = sum(lengths[:skip])
            n = sum(lengths[skip:])
            if n:
                s.segments.append((t, src0, src0 + n, s.known))
            for ln in lengths[skip:]:
                s.known += ln
                p_ends[k].append(s.known)
        for j in range(skip, len(ok)):
            p_index.append(ok[j])
            p_stats.append(st[j])
            p_shapes.append([manifest["shapes"][name][j] for name, fixed in parts if not fixed])
        summary.encoded += len(ok) - skip
        summary.raw_bytes += manifest["raw_bytes"] if skip == 0 else 0

    def commit(final: bool) -> None:
        """Commit the samples whose positions are written in every stream."""
        nonlocal last_commit, cleaned, logged, warned
        r = len(p_index)
        for k, s in enumerate(streams):
            r = min(r, bisect.bisect_right(p_ends[k], s.written()))
        if r == 0 and not final:
            return
        for j in range(r):
            n, mean, m2 = p_stats[j]
            writer.add_stats(ChannelStats(n.copy(), mean.copy(), m2.copy()))
        g = writer.group
        lo = writer.progress.samples
        hi = lo + r
        if r:
            idx = p_index[:r]
            _write_rows(g["labels"], lo, hi, np.array([sources.labels[i] for i in idx], np.int64))
            _write_rows(g["source_index"], lo, hi, np.array(idx, dtype=np.int64))
            _write_rows(g["paths"], lo, hi, np.array([sources.names[i] for i in idx], dtype=str))
            ragged = [name for name, fixed in parts if not fixed]
            for q, name in enumerate(ragged):
                k = [s.part for s in streams].index(name)
                shapes = np.array([p_shapes[j][q] for j in range(r)], dtype=np.int32)
                ends = np.array(p_ends[k][:r], dtype=np.int64)
                offsets = ends - np.prod(shapes.astype(np.int64), axis=1)
                _write_rows(g[name]["shape"], lo, hi, shapes)
                _write_rows(g[name]["offset"], lo, hi, offsets)
        if final:
            consumed = n_inputs
        elif r < len(p_index):
            consumed = p_index[r]
        else:
            consumed = inputs_consumed()
        for lst in (p_index, p_stats, p_shapes, *p_ends):
            del lst[:r]
        now = bisect.bisect_left([e["index"] for e in new_errors], consumed)
        writer.add_errors(new_errors[logged:now])
        logged = now
        now = bisect.bisect_left([e["index"] for e in new_warnings], consumed)
        writer.add_warnings(new_warnings[warned:now])
        warned = now
        writer.commit(consumed, hi)
        last_commit = time.perf_counter()
        # temporary groups of fully committed tasks are no longer needed, even by a resume
        while not final and cleaned < integrated and tasks[cleaned][2] <= consumed:
            _remove_dist(out, _task_key(tasks[cleaned][0]))
            cleaned += 1
        if on_progress and not final:
            on_progress(consumed, n_inputs, errors0 + len(new_errors))

    with connect(scheduler) as client:
        from distributed import KilledWorker, as_completed

        pending = as_completed()
        futures: dict[Any, tuple[str, Any]] = {}
        # Bounded in flight: copies start early (progress is committed as the run goes) and
        # temporary data and client memory stay proportional to the cluster, not the inputs.
        threads = sum(client.nthreads().values()) or 1
        window = max(4, 2 * threads)
        ahead = 4 * window

        def task_args(pos: int) -> tuple[Any, ...]:
            t, lo, hi = tasks[pos]
            return (out, t, lo, sources.paths[lo:hi], opts, parts, spec.channels, encode_fn)

        def admit() -> None:
            """Load finished tasks of a previous run, submit the others (within bounds)."""
            nonlocal admitted
            busy = sum(1 for kind, _ in futures.values() if kind == "encode")
            while admitted < len(tasks) and busy < window and admitted < integrated + ahead:
                pos = admitted
                admitted += 1
                loaded = _load_task(out, tasks[pos][0]) if resume else None
                if loaded is not None:
                    results[pos] = loaded
                    continue
                f = client.submit(
                    _encode_task,
                    *task_args(pos),
                    key=f"freqdata-encode-{run}-{tasks[pos][0]}",
                    retries=retries,
                    pure=False,
                )
                futures[f] = ("encode", pos)
                pending.add(f)
                busy += 1

        def advance() -> None:
            """Integrate finished tasks in order and submit the copies they make possible."""
            nonlocal integrated
            before = -1
            while before != integrated:
                before = integrated
                admit()
                while integrated < len(tasks) and integrated in results:
                    integrate(*results.pop(integrated))
                    integrated += 1
            all_known = integrated == len(tasks)
            if on_progress:
                on_progress(inputs_consumed(), n_inputs, errors0 + len(new_errors))
            for s in streams:
                last = -(-s.known // s.unit) if all_known else s.known // s.unit
                if s.next_unit >= last:
                    continue
                arr = writer.group[s.target]
                if arr.shape[0] < s.known:
                    arr.resize((s.known, *arr.shape[1:]))
                for u in range(s.next_unit, last):
                    lo, hi = u * s.unit, min((u + 1) * s.unit, s.known)
                    f = client.submit(
                        _copy_task,
                        out,
                        s.target,
                        s.part,
                        lo,
                        hi,
                        s.sources(lo, hi),
                        key=f"freqdata-copy-{run}-{s.part}-{u}",
                        retries=retries,
                        pure=False,
                        priority=10,  # before queued encodes: frees temp data, commits early
                    )
                    futures[f] = ("copy", (s, u))
                    pending.add(f)
                s.next_unit = last

        try:
            advance()
            for f in pending:
                kind, what = futures.pop(f)
                if kind == "encode":
                    try:
                        results[what] = f.result()
                    except KilledWorker:
                        results[what] = _encode_isolated(*task_args(what))
                    advance()
                else:
                    f.result()
                    s, u = what
                    s.done_units.add(u)
                    if time.perf_counter() - last_commit >= commit_every_s:
                        commit(final=False)
                f.release()
        except BaseException:
            client.cancel(list(futures))
            raise
    commit(final=True)
    _remove_dist(out)  # before the final record: a resume after a kill here finishes it
    writer.finish()
    summary.failed = len(new_errors)
    summary.errors = new_errors
    summary.seconds = time.perf_counter() - t_start
    return summary


def _write_rows(arr: Any, lo: int, hi: int, rows: np.ndarray) -> None:
    """Write rows ``[lo, hi)`` of ``arr``, growing it to ``hi`` (client-side index arrays)."""
    if arr.shape[0] < hi:
        arr.resize((hi, *arr.shape[1:]))
    writable(arr)[lo:hi] = rows
