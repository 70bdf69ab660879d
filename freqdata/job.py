"""Encode a list of images into a store: workers, batches, error log, resume, summary.

The run is a straight line: :func:`freqdata.sources.list_sources` → :func:`encode_image` in
worker processes (:func:`freqdata.pool.ordered_map`, in input order) →
:class:`freqdata.store.StoreWriter` commits batch after batch. A failing input never stops
the run: its reason goes to the store's error log and the summary. That includes an input
that is not a regular file or is larger than ``max_bytes`` (checked before it is read,
:func:`freqdata.sources.read_input`) and one whose worker process dies (retried once alone,
then recorded). Interrupt it at any point and ``resume=True`` continues after the last
committed batch; the finished store is identical to an uninterrupted run.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from freqdata import __version__
from freqdata.encode import CHROMA, PATHS, encode_image
from freqdata.errors import UsageError
from freqdata.jpeg import DamagedJpegWarning
from freqdata.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from freqdata.pixels import parse_geometry
from freqdata.pool import ordered_map
from freqdata.presets import resolve_preset
from freqdata.sources import Sources, escape_name, list_sources, read_input
from freqdata.store import Part, StoreSpec, StoreWriter, exists, open_store, store_bytes

DCT_CONVENTION = (
    "orthonormal 2-D DCT-II (scipy norm='ortho') of 8x8 blocks of x - 128, JPEG's FDCT scale; "
    "coefficient index 8*v + u (v vertical/row frequency); JFIF full-range BT.601 YCbCr"
)


@dataclass(frozen=True)
class EncodeOptions:
    """How each image is encoded (see :func:`freqdata.encode_image`); ``max_bytes``: larger
    input files are recorded as failed without being read; ``lenient``: damaged JPEGs are
    stored as far as they decode, each listed in the store's warning log."""

    preset: str = "dctnet-24"
    path: str = "coeff"
    geometry: str = "none"
    chroma: str = "full"
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    lenient: bool = False

    def validate(self) -> None:
        """Check every option (nothing else is read); :class:`UsageError` naming the bad one."""
        resolve_preset(self.preset)
        geo = parse_geometry(self.geometry)
        if self.path not in PATHS:
            raise UsageError(f"unknown path {self.path!r}: choose one of {', '.join(PATHS)}")
        if self.chroma not in CHROMA:
            raise UsageError(
                f"unknown chroma {self.chroma!r}: choose one of {', '.join(CHROMA)}"
            )
        if self.path == "coeff" and geo.resize is not None:
            raise UsageError(
                f"geometry {self.geometry!r} resamples pixels: use --path pixels (or leave "
                "--path out)"
            )
        if self.chroma == "native" and geo.crop is not None:
            raise UsageError(
                "chroma 'native' is stored in the ragged layout: use geometry 'none'"
            )
        if self.path == "dctnet" and geo.crop is None:
            raise UsageError(
                "--path dctnet is DCTNet's evaluation transform: it needs a crop geometry "
                f"(resnet, mobilenet or S:C), got {self.geometry!r}"
            )
        if not isinstance(self.max_pixels, int) or self.max_pixels <= 0:
            raise UsageError(f"max_pixels must be a positive integer, got {self.max_pixels!r}")
        if not isinstance(self.max_bytes, int) or self.max_bytes <= 0:
            raise UsageError(f"max_bytes must be a positive integer, got {self.max_bytes!r}")

    def spec(self, sources: Sources) -> StoreSpec:
        """The store layout these options produce for ``sources`` (validates the options)."""
        self.validate()
        p = resolve_preset(self.preset)
        geo = parse_geometry(self.geometry)
        names = [f"Y{k}" for k in p.y] + [f"Cb{k}" for k in p.cb] + [f"Cr{k}" for k in p.cr]
        grid = (geo.crop // 8, geo.crop // 8) if geo.crop else None
        if self.chroma == "full":
            parts = [Part("cubes", p.channels, grid)]
        else:
            parts = [Part("luma", len(p.y)), Part("chroma", len(p.cb) + len(p.cr))]
        config = {
            "preset": self.preset,
            "indices": {"y": p.y, "cb": p.cb, "cr": p.cr},
            "path": self.path,
            "geometry": self.geometry,
            "chroma": self.chroma,
            "max_pixels": self.max_pixels,
            "max_bytes": self.max_bytes,
            "dtype": "int16",
            "dct": DCT_CONVENTION,
            "freqdata_version": __version__,
        }
        if self.lenient:  # strict stores keep the record they always had
            config["lenient"] = True
        return StoreSpec(parts, config, names, sources.class_names, sources.digest(), len(sources))


@dataclass
class EncodeSummary:
    """What one run did. ``failed`` counts inputs that could not be encoded in this run;
    :attr:`store_failed` those of the whole store (earlier runs of a resumed store too)."""

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

    @property
    def store_failed(self) -> int:
        """Inputs recorded as failed in the whole store (its error log)."""
        return len(open_store(self.out).errors)


class Damaged(tuple):
    """The part arrays of an input encoded despite damage (``lenient``): a result like any
    other, plus ``warning``, the reason that goes to the store's warning log."""

    warning: str

    def __new__(cls, parts: tuple[np.ndarray, ...], warning: str) -> Damaged:
        self = super().__new__(cls, parts)
        self.warning = warning
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return Damaged, (tuple(self), self.warning)


def encode_one(path: str, opts: EncodeOptions) -> tuple[np.ndarray, ...] | str:
    """Encode one input; any failure becomes its reason string (never raises). With
    ``opts.lenient`` a damaged JPEG comes back as :class:`Damaged`."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DamagedJpegWarning)
            cube = encode_image(
                read_input(path, opts.max_bytes),
                opts.preset,
                opts.path,
                opts.geometry,
                opts.chroma,
                max_pixels=opts.max_pixels,
                lenient=opts.lenient,
            )
    except Exception as e:  # one bad input must not stop the run: record why
        return escape_name(f"{type(e).__name__}: {e}")
    parts = cube if isinstance(cube, tuple) else (cube,)
    damage = [str(w.message) for w in caught if issubclass(w.category, DamagedJpegWarning)]
    return Damaged(parts, escape_name("; ".join(damage))) if damage else parts


WORKER_DIED = (
    "WorkerCrash: the worker process died twice while encoding this input, the second time "
    "alone (a decoder crash, or killed, e.g. by the out-of-memory killer)"
)


def _ordered_map(fn: Callable, items: list, workers: int, opts: EncodeOptions) -> Iterator:
    """``fn(item, opts)`` for each item, in order, on ``workers`` processes (0 = inline).

    With processes (:func:`freqdata.pool.ordered_map`), a worker that dies costs only the
    input it held: that input is retried once alone in a fresh process and yields
    :data:`WORKER_DIED` if that dies too. Inline (``workers=0``) has no such protection.
    """
    if workers <= 0:
        for x in items:
            yield fn(x, opts)
        return
    yield from ordered_map(fn, items, opts, workers, WORKER_DIED)


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
    with writer:  # the store's lock is released however the run ends
        start = writer.progress.inputs_done
        summary = EncodeSummary(str(out), len(sources), resumed_from=start)
        todo = list(range(start, len(sources)))
        if on_progress:
            on_progress(start, len(sources), len(writer.errors))
        results = _ordered_map(encode_one, [sources.paths[i] for i in todo], workers, opts)
        batch: list[tuple[int, str, int, Any]] = []
        failed_before = len(writer.errors)
        for i, result in zip(todo, results, strict=True):
            batch.append((i, sources.names[i], sources.labels[i], result))
            if isinstance(result, Damaged):
                writer.add_warnings(
                    [{"index": i, "path": sources.names[i], "reason": result.warning}]
                )
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
