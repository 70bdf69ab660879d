"""Direct reads of fixed-layout image stores: zarr v3 shards decoded without zarr's per-call cost.

zarr costs ~0.5-1.5 ms per call (docs/benchmarks.md), which caps a loader far below the
3000 samples/s/core target. :class:`ShardReader` reads a shard's index once (crc32c
checked, cached), reads the wanted inner chunks with ``preadv``, checks each chunk's crc32c
and Blosc-decodes it with c-blosc's thread-safe ``blosc_decompress_ctx`` (numcodecs' own
library, through ctypes, which releases the GIL) straight into rows of a batch. It supports
only the layout freqdata writes on a local disk (see :meth:`ShardReader.open`); anything
else is read through zarr.

Integrity (docs/store.md): for arrays with checksums (format 2) a missing shard file, an
index entry marking a committed row absent, a damaged index or a chunk whose crc32c does not
match raise :class:`~freqdata.errors.StoreError` naming the array, the shard file and the
sample. Format 1 arrays (no checksums, chunks equal to the fill value were not stored) read
absent rows as the fill value, as they always did.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from freqdata.errors import StoreError

_MISSING = np.uint64(2**64 - 1)  # zarr's shard index entry for an absent inner chunk


class ShardReader:
    """Direct reader of one fixed-layout part stored as zarr v3 shards on a local disk.

    Supported: ``sharding_indexed`` with inner chunks of one row along axis 0 and whole rows
    otherwise, index at the end (``bytes`` little endian + ``crc32c``), inner codecs
    ``bytes`` (little endian) optionally followed by ``blosc``, optionally followed by
    ``crc32c`` (then every chunk is checked and absent committed rows raise, see the module
    docstring). :meth:`open` returns None for anything else, and the caller reads through
    zarr.
    """

    def __init__(
        self,
        root: Path,
        shape: tuple[int, ...],
        shard_rows: int,
        dtype: np.dtype,
        blosc: bool,
        fill: float,
        checksums: bool = False,
    ) -> None:
        self.root = root
        self.sample_shape = shape
        self.shard_rows = shard_rows
        self.dtype = dtype
        self.blosc = blosc
        self.fill = fill
        self.checksums = checksums
        self.sample_bytes = int(np.prod(shape)) * dtype.itemsize
        self._index: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, array_dir: Path) -> ShardReader | None:
        try:
            meta = json.loads((array_dir / "zarr.json").read_text())
        except (OSError, ValueError):
            return None
        try:
            codecs = meta["codecs"]
            if len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed":
                return None
            conf = codecs[0]["configuration"]
            shard = meta["chunk_grid"]["configuration"]["chunk_shape"]
            inner = conf["chunk_shape"]
            shape = meta["shape"]
            if inner[0] != 1 or list(inner[1:]) != list(shape[1:]) or shard[1:] != shape[1:]:
                return None
            if meta["chunk_key_encoding"] != {
                "name": "default",
                "configuration": {"separator": "/"},
            }:
                return None
            if conf.get("index_location", "end") != "end" or [
                c["name"] for c in conf["index_codecs"]
            ] != ["bytes", "crc32c"]:
                return None
            names = [c["name"] for c in conf["codecs"]]
            checksums = names[-1:] == ["crc32c"]
            if names[: len(names) - checksums] not in (["bytes"], ["bytes", "blosc"]):
                return None
            if conf["codecs"][0].get("configuration", {}).get("endian", "little") != "little":
                return None
            dtype = np.dtype(meta["data_type"]).newbyteorder("<")
        except (KeyError, TypeError, IndexError):
            return None
        return cls(
            array_dir,
            tuple(shape[1:]),
            shard[0],
            dtype,
            "blosc" in names,
            meta.get("fill_value", 0) or 0,
            checksums,
        )

    def _damaged(self, shard: int, rows: np.ndarray | int, what: str) -> StoreError:
        """The error for damage to ``shard`` affecting store rows ``rows``."""
        return StoreError(
            f"damaged store {self.root.parent}: array {self.root.name!r}, "
            f"{samples_text(rows)}: {what} (shard file {self._path(shard)}); "
            "freqdata inspect --verify lists all damage"
        )

    def _path(self, shard: int) -> Path:
        return self.root / "c" / str(shard) / "/".join("0" * len(self.sample_shape))

    def _shard_index(self, shard: int, fd: int, rows: np.ndarray, rows_valid: int) -> np.ndarray:
        idx = self._index.get(shard)
        if idx is not None:
            return idx
        nbytes = 16 * self.shard_rows + 4
        size = os.fstat(fd).st_size
        if size < nbytes:
            raise self._damaged(shard, rows, f"truncated to {size} bytes")
        raw = os.pread(fd, nbytes, size - nbytes)
        if len(raw) != nbytes or google_crc32c.value(raw[:-4]) != int.from_bytes(
            raw[-4:], "little"
        ):
            raise self._damaged(shard, rows, "shard index checksum mismatch (damaged or truncated)")
        idx = np.frombuffer(raw, dtype="<u8", count=2 * self.shard_rows).reshape(-1, 2)
        if rows_valid == self.shard_rows:  # a full shard is immutable: cache its index
            self._index[shard] = idx
        return idx

    def read(self, rows: np.ndarray, targets: Sequence[np.ndarray], n: int) -> None:
        """Decode store row ``rows[j]`` into ``targets[j]`` (a C-contiguous sample array).

        ``n``: the store's committed row count (the index of a partial shard is not cached).
        Safe to call from several threads at once (the decoder releases the GIL).
        """
        order = np.argsort(rows, kind="stable")
        shards = rows[order] // self.shard_rows
        for group in np.split(order, np.flatnonzero(np.diff(shards)) + 1):
            s = int(rows[group[0]] // self.shard_rows)
            self._read_shard(s, rows[group], [targets[j] for j in group], n)

    def _read_shard(self, s: int, rows: np.ndarray, targets: list[np.ndarray], n: int) -> None:
        try:
            fd = os.open(self._path(s), os.O_RDONLY)
        except FileNotFoundError:
            if self.checksums:
                raise self._damaged(s, rows, "shard file missing") from None
            for t in targets:
                t[...] = self.fill
            return
        try:
            valid = min(self.shard_rows, n - s * self.shard_rows)
            idx = self._shard_index(s, fd, rows, valid)
            local = rows - s * self.shard_rows
            offs, lens = idx[local, 0], idx[local, 1]
            present = offs != _MISSING
            if self.checksums and not present.all():
                raise self._damaged(s, rows[~present], "chunk absent from the shard index")
            size = os.fstat(fd).st_size
            beyond = present & (offs + lens > size)
            if beyond.any():
                raise self._damaged(s, rows[beyond], f"chunk beyond the end of a {size}-byte file")
            for t, ok in zip(targets, present, strict=True):
                if not ok:
                    t[...] = self.fill
            if not present.any():
                return
            offs, lens = offs[present], lens[present]
            rows = rows[present]
            targets = [t for t, ok in zip(targets, present, strict=True) if ok]
            lo, hi = int(offs.min()), int((offs + lens).max())
            if int(lens.sum()) * 2 >= hi - lo:  # most of the span is wanted: one read
                buf = _pread(fd, hi - lo, lo)
                chunks = [
                    buf[int(o) - lo : int(o) - lo + int(ln)]
                    for o, ln in zip(offs, lens, strict=True)
                ]
            else:
                chunks = [_pread(fd, int(ln), int(o)) for o, ln in zip(offs, lens, strict=True)]
            for r, t, c in zip(rows, targets, chunks, strict=True):
                if self.checksums:
                    if len(c) < 4 or google_crc32c.value(c[:-4]) != int.from_bytes(
                        c[-4:].tobytes(), "little"
                    ):
                        raise self._damaged(s, r, "chunk checksum mismatch")
                    c = c[:-4]
                try:
                    if self.blosc:
                        _blosc_decompress(c, t)
                    else:
                        t[...] = c.view(self.dtype).reshape(self.sample_shape)
                except ValueError as e:
                    raise self._damaged(s, r, str(e)) from None
        finally:
            os.close(fd)


def samples_text(rows: Sequence[int] | np.ndarray | int, unit: str = "sample") -> str:
    """``sample 5``, ``samples 5, 9, 12`` or ``samples 0-63`` (consecutive rows) for
    messages; long lists are cut after 8."""
    r = np.atleast_1d(np.asarray(rows, dtype=np.int64))
    if r.size == 1:
        return f"{unit} {int(r[0])}"
    if r.size > 2 and (np.diff(r) == 1).all():
        return f"{unit}s {int(r[0])}-{int(r[-1])}"
    more = f", … ({r.size} in all)" if r.size > 8 else ""
    return f"{unit}s " + ", ".join(str(int(v)) for v in r[:8]) + more


def _pread(fd: int, size: int, offset: int) -> np.ndarray:
    """``size`` bytes at ``offset`` as a uint8 array (one ``preadv``, no intermediate bytes)."""
    buf = np.empty(size, np.uint8)
    got = os.preadv(fd, [buf], offset)
    if got != size:
        raise StoreError(f"short read: {got} of {size} bytes at {offset} (a truncated shard)")
    return buf


@functools.cache
def _blosc_ctx() -> Any:
    """c-blosc's thread-safe ``blosc_decompress_ctx`` from numcodecs' own extension, through
    ctypes (which releases the GIL, so threads decode in parallel); None if unavailable."""
    try:
        import numcodecs.blosc as nb

        fn = ctypes.CDLL(nb.__file__).blosc_decompress_ctx
    except (ImportError, OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _blosc_decompress(src: np.ndarray, dst: np.ndarray) -> None:
    """Blosc frame ``src`` (uint8) → ``dst`` (C-contiguous, exactly the frame's size)."""
    if len(src) < 16 or int.from_bytes(src[4:8].tobytes(), "little") != dst.nbytes:
        raise StoreError(f"blosc frame of {dst.nbytes} bytes expected: the store is damaged")
    fn = _blosc_ctx()
    if fn is None:
        import numcodecs.blosc as nb

        nb.decompress(src, dst)
        return
    got = fn(src.ctypes.data, dst.ctypes.data, dst.nbytes, 1)
    if got != dst.nbytes:
        raise StoreError(f"blosc decompression failed ({got}): the store is damaged")
