"""Direct reads of fixed-layout image stores: zarr v3 shards decoded without zarr's per-call cost.

zarr costs ~0.5-1.5 ms per call (docs/benchmarks.md), which caps a loader far below the
3000 samples/s/core target. :class:`ShardReader` reads a shard's index once (crc32c
checked, cached), reads the wanted inner chunks with ``preadv`` and Blosc-decodes them with
c-blosc's thread-safe ``blosc_decompress_ctx`` (numcodecs' own library, through ctypes,
which releases the GIL) straight into rows of a batch. It supports only the layout freqdata
writes on a local disk (see :meth:`ShardReader.open`); anything else is read through zarr.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_MISSING = np.uint64(2**64 - 1)  # zarr's shard index entry for an absent inner chunk


class ShardReader:
    """Direct reader of one fixed-layout part stored as zarr v3 shards on a local disk.

    Supported: ``sharding_indexed`` with inner chunks of one row along axis 0 and whole rows
    otherwise, index at the end (``bytes`` little endian + ``crc32c``), inner codecs
    ``bytes`` (little endian) optionally followed by ``blosc``. :meth:`open` returns None
    for anything else, and the caller reads through zarr.
    """

    def __init__(
        self,
        root: Path,
        shape: tuple[int, ...],
        shard_rows: int,
        dtype: np.dtype,
        blosc: bool,
        fill: float,
    ) -> None:
        self.root = root
        self.sample_shape = shape
        self.shard_rows = shard_rows
        self.dtype = dtype
        self.blosc = blosc
        self.fill = fill
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
            if names not in (["bytes"], ["bytes", "blosc"]):
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
            names[-1] == "blosc",
            meta.get("fill_value", 0) or 0,
        )

    def _shard_index(self, shard: int, fd: int, rows_valid: int) -> np.ndarray:
        idx = self._index.get(shard)
        if idx is not None:
            return idx
        nbytes = 16 * self.shard_rows + 4
        size = os.fstat(fd).st_size
        raw = os.pread(fd, nbytes, size - nbytes)
        if len(raw) != nbytes:
            raise OSError(f"shard {shard} of {self.root} is truncated")
        import google_crc32c

        if google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            raise OSError(f"shard {shard} of {self.root}: index checksum mismatch")
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
        path = self.root / "c" / str(s) / "/".join("0" * len(self.sample_shape))
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            for t in targets:
                t[...] = self.fill
            return
        try:
            valid = min(self.shard_rows, n - s * self.shard_rows)
            idx = self._shard_index(s, fd, valid)
            local = rows - s * self.shard_rows
            offs, lens = idx[local, 0], idx[local, 1]
            present = offs != _MISSING
            for t, ok in zip(targets, present, strict=True):
                if not ok:
                    t[...] = self.fill
            if not present.any():
                return
            offs, lens = offs[present], lens[present]
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
            for t, c in zip(targets, chunks, strict=True):
                if self.blosc:
                    _blosc_decompress(c, t)
                else:
                    t[...] = c.view(self.dtype).reshape(self.sample_shape)
        finally:
            os.close(fd)


def _pread(fd: int, size: int, offset: int) -> np.ndarray:
    """``size`` bytes at ``offset`` as a uint8 array (one ``preadv``, no intermediate bytes)."""
    buf = np.empty(size, np.uint8)
    got = os.preadv(fd, [buf], offset)
    if got != size:
        raise OSError(f"short read: {got} of {size} bytes at {offset}")
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
        raise OSError(f"blosc frame of {dst.nbytes} bytes expected: the store is damaged")
    fn = _blosc_ctx()
    if fn is None:
        import numcodecs.blosc as nb

        nb.decompress(src, dst)
        return
    got = fn(src.ctypes.data, dst.ctypes.data, dst.nbytes, 1)
    if got != dst.nbytes:
        raise OSError(f"blosc decompression failed ({got}): the store is damaged")
