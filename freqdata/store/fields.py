"""Field kinds: how each kind of stored value is created, appended and truncated.

A store is a Zarr group of fields, all indexed by a row (a sample, an instance, an image):

* :class:`Column` — one array ``(N, *tail)`` of one dtype: fixed-shape cubes or images
  (sharded, one row per inner chunk), per-row values (labels, indices, boxes, vectors) and
  strings (paths);
* :class:`Ragged` — values whose shape varies per row: a group holding ``data`` (flat),
  ``shape`` ``(N, ndim)`` int32 and ``offset`` ``(N,)`` int64, row ``i`` being
  ``data[offset[i] : offset[i] + prod(shape[i])].reshape(shape[i])``.

Each field appends rows (array shapes first, then data) and truncates to a committed row
count leaving the bytes of a field that never had more rows (:func:`truncate_rows`), which is
what the commit protocol of :mod:`freqdata.store.writer` needs. Every array is created with
the one codec (:func:`freqdata.store.layout.array_options`). Reading back is
:mod:`freqdata.store.reader`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.core.array import AsyncArray
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import MemoryStore, StorePath

from freqdata.store.layout import INDEX_CHUNK, array_options, object_key, storage_rows, writable


def truncate_rows(arr: zarr.Array, n: int) -> None:
    """Shrink ``arr`` to ``n`` rows, leaving the bytes of an array that never had more.

    The edge object (the chunk or shard holding row ``n - 1``, when ``n`` is not a multiple
    of its rows) is encoded afresh from its rows ``< n`` in a scratch in-memory array with
    ``arr``'s metadata at ``n`` rows, and replaces the stored object in one write; then the
    resize deletes every object past it and writes the new shape last. No step touches the
    rows ``< n``, so a truncation interrupted anywhere is completed by running it again.
    """
    old = arr.shape[0]
    if old <= n:
        return
    arr = writable(arr)
    rows = storage_rows(arr)
    if n % rows:
        lo = n // rows * rows
        scratch_store = MemoryStore()
        scratch = zarr.Array(
            AsyncArray(
                arr.metadata.update_shape((n, *arr.shape[1:])),
                StorePath(scratch_store, arr.path),  # same keys as arr
                config=arr.async_array.config,
            )
        )
        scratch[lo:n] = arr[lo:n]
        key = object_key(arr, lo // rows)
        fresh = sync(scratch_store.get(key, default_buffer_prototype()))
        store = arr.store_path.store
        if fresh is None:
            sync(store.delete(key))
        else:
            sync(store.set(key, fresh))  # LocalStore: temporary file, then rename
    arr.resize((n, *arr.shape[1:]))


def append_rows(arr: zarr.Array, rows: np.ndarray) -> None:
    """Append ``rows`` along axis 0 (shape first, then the data)."""
    arr = writable(arr)
    n = arr.shape[0]
    arr.resize((n + len(rows), *arr.shape[1:]))
    arr[n:] = rows


@dataclass(frozen=True)
class Column:
    """Per-row values ``(N, *tail)``: ``rows`` per chunk, or per inner chunk of a shard of
    ``shard`` rows; ``fill`` (None: zarr's default, e.g. ``""`` for strings); ``dims``: Zarr
    dimension names, ``("sample", ...)``, or None."""

    name: str
    dtype: Any
    tail: tuple[int, ...] = ()
    rows: int = INDEX_CHUNK
    fill: Any = 0
    shard: int | None = None
    dims: tuple[str, ...] | None = None

    def create(self, g: zarr.Group) -> None:
        """Create the empty array ``g[name]``."""
        typesize = 1 if self.dtype is str else np.dtype(self.dtype).itemsize
        extra: dict[str, Any] = {} if self.fill is None else {"fill_value": self.fill}
        if self.shard is not None:
            extra["shards"] = (self.shard, *self.tail)
        if self.dims is not None:
            extra["dimension_names"] = self.dims
        g.create_array(self.name, shape=(0, *self.tail), dtype=self.dtype,
                       chunks=(self.rows, *self.tail), **array_options(typesize), **extra)

    def append(self, g: zarr.Group, values: np.ndarray) -> None:
        """Append rows ``values`` ``(k, *tail)``."""
        append_rows(g[self.name], values)

    def truncate(self, g: zarr.Group, n: int) -> None:
        """Keep the first ``n`` rows (:func:`truncate_rows`)."""
        truncate_rows(g[self.name], n)


@dataclass(frozen=True)
class Ragged:
    """Per-row values of varying shape (``ndim`` axes) in the group ``g[name]``: ``data``
    (flat ``dtype``, ``chunk`` elements per chunk), ``shape`` and ``offset``."""

    name: str
    dtype: Any
    ndim: int
    chunk: int

    def create(self, g: zarr.Group) -> None:
        """Create the empty group ``g[name]`` and its three arrays."""
        rg = g.create_group(self.name)
        Column("data", self.dtype, rows=self.chunk).create(rg)
        Column("shape", np.int32, (self.ndim,)).create(rg)
        Column("offset", np.int64).create(rg)

    def end(self, g: zarr.Group, rows: int) -> int:
        """Elements of ``data`` used by the first ``rows`` rows."""
        if rows == 0:
            return 0
        rg = g[self.name]
        return int(rg["offset"][rows - 1] + np.prod(rg["shape"][rows - 1]))

    def append(self, g: zarr.Group, arrays: Sequence[np.ndarray]) -> None:
        """Append one row per array (each with ``ndim`` axes), after the rows stored."""
        if not arrays:
            return
        rg = g[self.name]
        start = self.end(g, rg["shape"].shape[0])
        sizes = np.array([a.size for a in arrays], dtype=np.int64)
        append_rows(rg["data"], np.concatenate([a.ravel() for a in arrays]).astype(self.dtype))
        append_rows(rg["shape"], np.array([a.shape for a in arrays], dtype=np.int32))
        append_rows(rg["offset"], start + np.concatenate([[0], np.cumsum(sizes)[:-1]]))

    def truncate(self, g: zarr.Group, n: int) -> None:
        """Keep the first ``n`` rows and the data they use."""
        rg = g[self.name]
        end = self.end(g, min(n, rg["shape"].shape[0]))
        truncate_rows(rg["shape"], n)
        truncate_rows(rg["offset"], n)
        truncate_rows(rg["data"], end)
