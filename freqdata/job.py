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
from freqdata.sources import Sources, list_sources
from freqdata.store import Part, StoreSpec, StoreWriter, store_bytes

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
            path, opts.preset, opts.path, opts.geometry, opts.chroma, max_pixels=opts.max_pixels
        )
    except Exception as e:  # one bad input must not stop the run: record why
        return f"{type(e).__name__}: {e}"
    return cube if isinstance(cube, tuple) else (cube,)


def _ordered_map(fn: Callable, items: list, workers: int, opts: EncodeOptions) -> Iterator:
    """``fn(item, opts)`` for each item, in order, on ``workers`` processes (1 = inline)."""
    if workers <= 1:
        for it in items:
            yield fn(it, opts)
        return
    ctx = multiprocessing.get_context("forkserver")
    window = 4 * workers
    with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        it = iter(items)
        pending = deque(ex.submit(fn, x, opts) for x in islice(it, window))
        while pending:
            result = pending.popleft().result()
            for x in islice(it, 1):
                pending.append(ex.submit(fn, x, opts))
            yield result


def encode_images(
    src: str | Path | Sources,
    out: str | Path,
    opts: EncodeOptions | None = None,
    *,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    batch_size: int = 64,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> EncodeSummary:
    """Encode every input of ``src`` into the store ``out``; returns the run's summary.

    ``on_progress(done, total, failed)`` is called after each batch. With ``resume`` an
    existing store made with the same options and inputs is continued; otherwise an
    existing ``out`` is an error unless ``overwrite``.
    """
    t0 = time.perf_counter()
    opts = opts or EncodeOptions()
    sources = src if isinstance(src, Sources) else list_sources(src)
    spec = opts.spec(sources)
    if resume and Path(out).exists():
        writer = StoreWriter.resume(out, spec)
    else:
        writer = StoreWriter.create(out, spec, overwrite=overwrite)
    start = writer.progress.inputs_done
    summary = EncodeSummary(str(out), len(sources), resumed_from=start)
    todo = list(range(start, len(sources)))
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
