"""Encode a list of images into a store: workers, batches, error log, resume, summary.

The run is a straight line: :func:`freqdata.sources.list_sources` → :func:`encode_image` in
worker processes (in input order) → :class:`freqdata.store.StoreWriter` commits batch after
batch. A failing input never stops the run: its reason goes to the store's error log and
the summary. Interrupt it at any point and ``resume=True`` continues after the last
committed batch; the finished store is identical to an uninterrupted run.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from freqdata import __version__
from freqdata.encode import encode_image
from freqdata.limits import DEFAULT_MAX_PIXELS
from freqdata.pixels import parse_geometry
from freqdata.presets import resolve_preset
from freqdata.sources import Sources, list_sources, read_input
from freqdata.store import Part, StoreSpec, StoreWriter, exists, store_bytes

DCT_CONVENTION = (
    "orthonormal 2-D DCT-II (scipy norm='ortho') of 8x8 blocks of x - 128, JPEG's FDCT scale; "
    "coefficient index 8*v + u (v vertical/row frequency); JFIF full-range BT.601 YCbCr"
)


@dataclass(frozen=True)
class EncodeOptions:
    """How each image is encoded (see :func:`freqdata.encode_image`)."""

    preset: str = "dctnet-24"
    path: str = "coeff"
    geometry: str = "none"
    chroma: str = "full"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def spec(self, sources: Sources) -> StoreSpec:
        """The store layout these options produce for ``sources`` (validates the options)."""
        p = resolve_preset(self.preset)
        geo = parse_geometry(self.geometry)
        if self.path == "coeff" and geo.crop is not None:
            raise ValueError(f"geometry {self.geometry!r} needs --path pixels")
        names = [f"Y{k}" for k in p.y] + [f"Cb{k}" for k in p.cb] + [f"Cr{k}" for k in p.cr]
        grid = (geo.crop // 8, geo.crop // 8) if geo.crop else None
        if self.chroma == "full":
            parts = [Part("cubes", p.channels, grid)]
        elif grid is not None:
            raise ValueError("chroma 'native' is stored in the ragged layout: use geometry 'none'")
        else:
            parts = [Part("luma", len(p.y)), Part("chroma", len(p.cb) + len(p.cr))]
        config = {
            "preset": self.preset,
            "indices": {"y": p.y, "cb": p.cb, "cr": p.cr},
            "path": self.path,
            "geometry": self.geometry,
            "chroma": self.chroma,
            "max_pixels": self.max_pixels,
            "dtype": "int16",
            "dct": DCT_CONVENTION,
            "freqdata_version": __version__,
        }
        return StoreSpec(parts, config, names, sources.class_names, sources.digest(), len(sources))


@dataclass
class EncodeSummary:
    """What one run did. ``failed`` counts inputs that could not be encoded in this run."""

    out: str
    inputs: int
    encoded: int = 0
    failed: int = 0
    resumed_from: int = 0
    raw_bytes: int = 0
    seconds: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def store_bytes(self) -> int:
        """Bytes on disk of the whole store."""
        return store_bytes(self.out)


def _encode_one(path: str, opts: EncodeOptions) -> tuple[np.ndarray, ...] | str:
    """Encode one input; any failure becomes its reason string (never raises)."""
    try:
        cube = encode_image(
            read_input(path),
            opts.preset,
            opts.path,
            opts.geometry,
            opts.chroma,
            max_pixels=opts.max_pixels,
        )
    except Exception as e:  # one bad input must not stop the run: record why
        return f"{type(e).__name__}: {e}"
    return cube if isinstance(cube, tuple) else (cube,)


WORKER_DIED = "WorkerCrash: the worker process died while decoding this input (decoder crash)"


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


def _ordered_map(fn: Callable, items: list, workers: int, opts: EncodeOptions) -> Iterator:
    """``fn(item, opts)`` for each item, in order, on ``workers`` processes (0 = inline).

    A worker that dies (a segfault in a decoder) breaks the pool: the input it was on is
    retried alone in a fresh process; if that dies too the input yields :data:`WORKER_DIED`
    and the run goes on with a new pool. Inline (``workers=0``) has no such protection.
    """
    if workers <= 0:
        for x in items:
            yield fn(x, opts)
        return
    window = 4 * workers
    it = iter(items)
    ex = _pool(workers)
    pending = deque((x, ex.submit(fn, x, opts)) for x in islice(it, window))
    try:
        while pending:
            x, fut = pending.popleft()
            try:
                result = fut.result()
            except BrokenProcessPool:
                ex.shutdown(wait=False, cancel_futures=True)
                with _pool(1) as alone:
                    try:
                        result = alone.submit(fn, x, opts).result()
                    except BrokenProcessPool:
                        result = WORKER_DIED
                ex = _pool(workers)
                pending = deque((y, ex.submit(fn, y, opts)) for y, _ in pending)
            for y in islice(it, 1):
                pending.append((y, ex.submit(fn, y, opts)))
            yield result
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def encode_images(
    src: str | Path | Sources,
    out: str | Path,
    opts: EncodeOptions | None = None,
    *,
    workers: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    batch_size: int = 64,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> EncodeSummary:
    """Encode every input of ``src`` into the store ``out``; returns the run's summary.

    ``workers``: encoding processes (0 = in this process; with processes, an input that
    crashes its decoder is recorded as failed instead of ending the run).
    ``on_progress(done, total, failed)`` is called at the start and after each batch.
    With ``resume`` an existing store made with the same options and inputs is continued;
    otherwise an existing ``out`` is an error unless ``overwrite``.
    """
    t0 = time.perf_counter()
    opts = opts or EncodeOptions()
    sources = src if isinstance(src, Sources) else list_sources(src)
    spec = opts.spec(sources)
    if resume and exists(out):
        writer = StoreWriter.resume(out, spec)
    else:
        writer = StoreWriter.create(out, spec, overwrite=overwrite)
    start = writer.progress.inputs_done
    summary = EncodeSummary(str(out), len(sources), resumed_from=start)
    todo = list(range(start, len(sources)))
    if on_progress:
        on_progress(start, len(sources), len(writer.errors))
    results = _ordered_map(_encode_one, [sources.paths[i] for i in todo], workers, opts)
    batch: list[tuple[int, str, int, Any]] = []
    failed_before = len(writer.errors)
    for i, result in zip(todo, results, strict=True):
        batch.append((i, sources.paths[i], sources.labels[i], result))
        if isinstance(result, str):
            summary.failed += 1
        else:
            summary.encoded += 1
            summary.raw_bytes += sum(a.nbytes for a in result)
        if len(batch) == batch_size or i == len(sources) - 1:
            writer.write_batch(batch, i + 1)
            batch = []
            if on_progress:
                on_progress(i + 1, len(sources), len(writer.errors))
    writer.finish()
    summary.errors = writer.errors[failed_before:]
    summary.seconds = time.perf_counter() - t0
    return summary


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
