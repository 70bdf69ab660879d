"""The store writer: append samples batch by batch, commit, resume after a crash.

Writes are append-only and committed in order: data first, then the ``progress`` attribute.
A crash leaves at most uncommitted rows past the committed count; :meth:`StoreWriter.resume`
truncates them, removing their chunks so the finished store is byte-identical to an
uninterrupted run. ``progress.complete`` is false until :meth:`StoreWriter.finish`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from freqdata.stats import ChannelStats
from freqdata.store.layout import (
    INDEX_CHUNK,
    RAGGED_CHUNK,
    SHARD_SAMPLES,
    array_options,
    delete_key,
    exists,
)
from freqdata.store.spec import FORMAT, Progress, StoreSpec

CUBE_DTYPE = np.int16


def storage_rows(arr: zarr.Array) -> int:
    """Rows along axis 0 per stored object (shard if sharded, else chunk)."""
    return (arr.shards or arr.chunks)[0]


def truncate_rows(arr: zarr.Array, n: int) -> None:
    """Shrink ``arr`` to ``n`` rows and delete every stored object past them.

    zarr keeps out-of-bounds chunks on resize; removing them (and rebuilding the edge
    object from its in-bounds rows) makes the result identical to never having written more.
    """
    old = arr.shape[0]
    if old <= n:
        return
    rows = storage_rows(arr)
    edge = n // rows
    keep = arr[edge * rows : n] if n % rows else None
    store = arr.store_path.store
    tail = "/".join("0" * (arr.ndim - 1))
    for k in range(edge, math.ceil(old / rows)):
        key = f"{arr.path}/c/{k}" + (f"/{tail}" if tail else "")
        delete_key(store, key)
    arr.resize((n, *arr.shape[1:]))
    if keep is not None:
        arr[edge * rows : n] = keep


def append_rows(arr: zarr.Array, rows: np.ndarray) -> None:
    n = arr.shape[0]
    arr.resize((n + len(rows), *arr.shape[1:]))
    arr[n:] = rows


class StoreWriter:
    """Appends encoded samples to a store and commits progress; see the module docstring."""

    def __init__(
        self,
        group: zarr.Group,
        spec: StoreSpec,
        progress: Progress,
        stats: ChannelStats,
        errors: list[dict[str, Any]],
    ) -> None:
        self.group = group
        self.spec = spec
        self.progress = progress
        self.stats = stats
        self.errors = errors

    # -- creation and resume -------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, spec: StoreSpec, *, overwrite: bool = False) -> StoreWriter:
        """A new, empty store at ``path`` (refuses to replace one unless ``overwrite``)."""
        if exists(path) and not overwrite:
            raise FileExistsError(
                f"{path} exists: pass resume=True to continue it or overwrite=True"
            )
        g = zarr.open_group(str(path), mode="w", zarr_format=3)
        for p in spec.parts:
            if p.grid is not None:
                hb, wb = p.grid
                g.create_array(
                    p.name,
                    shape=(0, p.channels, hb, wb),
                    dtype=CUBE_DTYPE,
                    chunks=(1, p.channels, hb, wb),
                    shards=(SHARD_SAMPLES, p.channels, hb, wb),
                    **array_options(),
                    fill_value=0,
                    dimension_names=("sample", "channel", "block_y", "block_x"),
                )
            else:
                pg = g.create_group(p.name)
                pg.create_array(
                    "data",
                    shape=(0,),
                    dtype=CUBE_DTYPE,
                    chunks=(RAGGED_CHUNK,),
                    **array_options(),
                    fill_value=0,
                )
                pg.create_array(
                    "shape", shape=(0, 3), dtype=np.int32, chunks=(INDEX_CHUNK, 3), fill_value=0
                )
                pg.create_array(
                    "offset", shape=(0,), dtype=np.int64, chunks=(INDEX_CHUNK,), fill_value=0
                )
        g.create_array("labels", shape=(0,), dtype=np.int64, chunks=(INDEX_CHUNK,), fill_value=-1)
        g.create_array(
            "source_index", shape=(0,), dtype=np.int64, chunks=(INDEX_CHUNK,), fill_value=-1
        )
        g.create_array("paths", shape=(0,), dtype=str, chunks=(INDEX_CHUNK,))
        sg = g.create_group("stats")
        for name in ("count", "mean", "m2", "std"):
            sg.create_array(name, shape=(spec.channels,), dtype=np.float64, fill_value=0.0)
        w = cls(g, spec, Progress(), ChannelStats.empty(spec.channels), [])
        w._commit()
        return w

    @classmethod
    def resume(cls, path: str | Path, spec: StoreSpec) -> StoreWriter:
        """Reopen a store for appending, after checking it was made by the same ``spec``.

        Rows written past the last commit (a crash mid-batch) are removed.
        """
        g = zarr.open_group(str(path), mode="r+", zarr_format=3)
        attrs = g.attrs.get("freqdata")
        if not attrs or attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a freqdata image store")
        theirs = {k: attrs.get(k) for k in spec.attrs()}
        if theirs != spec.attrs():
            diff = [k for k, v in spec.attrs().items() if theirs.get(k) != v]
            raise ValueError(
                f"cannot resume {path}: it was written with different {', '.join(diff)}"
            )
        progress = Progress(**attrs["progress"])
        stats = ChannelStats(*(g["stats"][k][:] for k in ("count", "mean", "m2")))
        w = cls(g, spec, progress, stats, list(attrs.get("errors", [])))
        w._truncate_to(progress.samples)
        return w

    def _truncate_to(self, n: int) -> None:
        for p in self.spec.parts:
            if p.grid is not None:
                truncate_rows(self.group[p.name], n)
            else:
                pg = self.group[p.name]
                end = 0
                if n:
                    shape = pg["shape"][n - 1]
                    end = int(pg["offset"][n - 1] + np.prod(shape))
                truncate_rows(pg["data"], end)
                truncate_rows(pg["shape"], n)
                truncate_rows(pg["offset"], n)
        for name in ("labels", "source_index", "paths"):
            truncate_rows(self.group[name], n)

    # -- writing ---------------------------------------------------------------------------
    def write_batch(self, items: list[tuple[int, str, int, Any]], inputs_done: int) -> None:
        """Append a batch and commit it.

        ``items``: ``(input_index, path, label, result)`` in input order, where ``result`` is
        a tuple of part arrays (one per :class:`Part`, each ``(C_p, Hb, Wb)``) or a ``str``
        (the reason the input failed). ``inputs_done``: inputs consumed after this batch.
        """
        ok = [(i, p, lab, r) for i, p, lab, r in items if not isinstance(r, str)]
        for k, part in enumerate(self.spec.parts):
            arrays = [r[k] for *_, r in ok]
            if not arrays:
                continue
            if part.grid is not None:
                append_rows(self.group[part.name], np.stack(arrays))
            else:
                pg = self.group[part.name]
                n = pg["shape"].shape[0]
                start = 0
                if n:
                    start = int(pg["offset"][n - 1] + np.prod(pg["shape"][n - 1]))
                sizes = np.array([a.size for a in arrays], dtype=np.int64)
                offsets = start + np.concatenate([[0], np.cumsum(sizes)[:-1]])
                append_rows(pg["data"], np.concatenate([a.ravel() for a in arrays]))
                append_rows(pg["shape"], np.array([a.shape for a in arrays], dtype=np.int32))
                append_rows(pg["offset"], offsets)
        if ok:
            labels = np.array([lab for _, _, lab, _ in ok], dtype=np.int64)
            append_rows(self.group["labels"], labels)
            append_rows(self.group["source_index"], np.array([i for i, *_ in ok], dtype=np.int64))
            append_rows(self.group["paths"], np.array([p for _, p, _, _ in ok], dtype=str))
        for _, _, _, r in ok:
            self.stats = self.stats.merge(ChannelStats.join([ChannelStats.of(a) for a in r]))
        self.errors.extend(
            {"index": i, "path": p, "reason": r} for i, p, _, r in items if isinstance(r, str)
        )
        self.progress.inputs_done = inputs_done
        self.progress.samples += len(ok)
        self._commit()

    def finish(self) -> None:
        """Mark the store complete."""
        self.progress.complete = True
        self._commit()

    def _commit(self) -> None:
        sg = self.group["stats"]
        for name, value in (
            ("count", self.stats.n),
            ("mean", self.stats.mean),
            ("m2", self.stats.m2),
            ("std", self.stats.std),
        ):
            sg[name][:] = value
        attrs = self.spec.attrs()
        attrs["progress"] = vars(self.progress).copy()
        attrs["errors"] = self.errors
        self.group.attrs["freqdata"] = attrs
