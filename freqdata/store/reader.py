"""Reading stores back: :class:`StoreGroup` (what every sample store shares) and
:class:`ImageStore` / :func:`open_store` for image stores, and :func:`read_checked`, the one
way freqdata reads rows of an array through zarr.

Integrity (docs/store.md, "Integrity"): every row below the committed count must have its
chunk (or shard). Reads raise :class:`~freqdata.errors.StoreError` naming the array and the
samples when one is absent or fails its crc32c, never return fill values. Arrays without
checksums (format 1 stores) are read as before: zarr stored no chunk equal to the fill value
there, so an absent chunk cannot be told from a deleted one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from freqdata.errors import StoreError
from freqdata.shards import ShardReader, samples_text
from freqdata.store.layout import (
    absent_objects,
    has_checksums,
    is_url,
    object_key,
    storage_rows,
)
from freqdata.store.spec import FORMAT, Part, Progress


def where(arr: zarr.Array) -> str:
    """``STORE: array 'NAME'`` for messages (the local path or URL of the store)."""
    store = arr.store_path.store
    root = getattr(store, "root", None)
    return f"{root if root is not None else store}: array {arr.path!r}"


def _decode_error(e: Exception) -> str:
    """What zarr's decode error means (its crc32c codec says "Stored and computed checksum do
    not match")."""
    return "chunk checksum mismatch" if "checksum" in str(e) else f"chunk cannot be decoded: {e}"


def require_rows(arr: zarr.Array, stop: int, start: int = 0, *, affected: str | None = None,
                 unit: str = "sample") -> None:
    """Raise :class:`StoreError` unless every stored object holding rows ``[start, stop)`` of
    ``arr`` exists (arrays with checksums; format 1 arrays are not checked) and the array
    has at least ``stop`` rows. ``affected`` names what the rows are (default: the rows of
    the first absent object, as ``unit`` numbers)."""
    if arr.shape[0] < stop:
        raise StoreError(
            f"damaged store {where(arr)} has {arr.shape[0]} rows, {stop} are committed"
        )
    if not has_checksums(arr):
        return
    absent = absent_objects(arr, start, stop)
    if absent:
        rows = storage_rows(arr)
        k = absent[0]
        text = affected or samples_text(range(max(k * rows, start), min((k + 1) * rows, stop)),
                                        unit)
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise StoreError(
            f"damaged store {where(arr)}, {text}: chunk {object_key(arr, k)!r} is "
            f"missing{more}; freqdata inspect --verify lists all damage"
        )


def read_checked(arr: zarr.Array, start: int, stop: int, *, affected: str | None = None,
                 unit: str = "sample") -> np.ndarray:
    """Rows ``[start, stop)`` of ``arr`` (``arr[start:stop]``), after :func:`require_rows`;
    a chunk failing its checksum (or, without checksums, failing to decode) raises
    :class:`StoreError` naming the array and ``affected`` (default: the rows)."""
    require_rows(arr, stop, start, affected=affected, unit=unit)
    try:
        return arr[start:stop]
    except (ValueError, RuntimeError) as e:
        text = affected or samples_text(range(start, stop), unit)
        raise StoreError(f"damaged store {where(arr)}, {text}: {_decode_error(e)}") from None


def absent_in_shard(arr: zarr.Array, k: int) -> np.ndarray:
    """Rows of shard ``k`` of the sharded ``arr`` (positions within the shard) that the
    shard's index marks absent, read through the store (any store, one ranged read); the
    index's crc32c is checked (:class:`StoreError` when it fails)."""
    import google_crc32c
    from zarr.abc.store import SuffixByteRequest
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    rows = storage_rows(arr)
    key = object_key(arr, k)
    got = sync(arr.store_path.store.get(key, default_buffer_prototype(),
                                        byte_range=SuffixByteRequest(16 * rows + 4)))
    raw = b"" if got is None else got.to_bytes()
    if len(raw) != 16 * rows + 4 or google_crc32c.value(raw[:-4]) != int.from_bytes(
        raw[-4:], "little"
    ):
        raise StoreError(f"damaged store {where(arr)}: shard index of {key!r} fails its crc32c")
    index = np.frombuffer(raw[:-4], "<u8").reshape(rows, 2)
    return np.flatnonzero(index[:, 0] == np.iinfo(np.uint64).max)


def read_rows(arr: zarr.Array, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (any order, repeats allowed) of ``arr`` in that order, with the checks of
    :func:`read_checked` (one zarr call)."""
    rows = np.asarray(rows, dtype=np.int64)
    per = storage_rows(arr)
    for k in np.unique(rows // per):
        lo = int(k) * per
        require_rows(arr, min(lo + per, int(rows.max()) + 1), lo)
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *arr.shape[1:]), arr.dtype)
    try:
        out[order] = arr.get_orthogonal_selection((rows[order],))
    except (ValueError, RuntimeError) as e:
        raise StoreError(
            f"damaged store {where(arr)}, {samples_text(np.unique(rows))}: {_decode_error(e)}"
        ) from None
    return out


class StoreRecord:
    """What every freqdata store (image, RGB, mask) reads from its commit record: the Zarr
    group, its ``freqdata`` attributes (:attr:`attrs`), the committed :attr:`progress`,
    ``len()`` (committed samples or instances), :attr:`complete`, :attr:`config`,
    :attr:`errors`, :attr:`warnings`, :attr:`format_version`. :class:`StoreError` when
    ``path`` is not a store of ``format``."""

    def __init__(self, path: str | Path, format: str, kind: str) -> None:
        self.path = str(path)
        try:
            self.group = zarr.open_group(self.path, mode="r", zarr_format=3)
            attrs = self.group.attrs.get("freqdata")
        except (FileNotFoundError, zarr.errors.NodeNotFoundError, ValueError) as e:
            raise StoreError(f"{path} is not a {kind}: {e}") from None
        if not attrs or attrs.get("format") != format:
            raise StoreError(f"{path} is not a {kind}")
        self.attrs: dict[str, Any] = attrs
        self.progress = Progress(**attrs["progress"])
        self._n = self.progress.samples

    def __len__(self) -> int:
        return self._n

    @property
    def format_version(self) -> int:
        """1: no checksums; 2: crc32c per chunk and every chunk stored (docs/store.md)."""
        return int(self.attrs.get("format_version", 1))

    @property
    def complete(self) -> bool:
        """False while an encode is running or was interrupted (resume it to finish)."""
        return self.progress.complete

    @property
    def config(self) -> dict[str, Any]:
        return self.attrs["config"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.attrs["errors"]

    @property
    def warnings(self) -> list[dict[str, Any]]:
        """``{index, path, reason}`` of inputs stored despite damage (``lenient``)."""
        return self.attrs.get("warnings", [])


class StoreGroup(StoreRecord):
    """What every freqdata sample store reads the same way (image stores, RGB stores): the
    :class:`StoreRecord` plus :attr:`labels` ``(N,)`` int64, :attr:`paths`, :attr:`mean` /
    :attr:`std` ``(C,)`` float64, :attr:`channel_names`, :attr:`class_names`.

    Opening checks that the per-sample index arrays (``labels``, ``source_index``,
    ``paths``) hold every committed row (:func:`require_rows`)."""

    format: str = FORMAT
    kind: str = "freqdata image store"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, self.format, self.kind)
        for name in ("labels", "source_index", "paths"):
            require_rows(self.group[name], self._n)
        self.labels: np.ndarray = read_checked(self.group["labels"], 0, self._n)

    @property
    def channel_names(self) -> list[str]:
        return self.attrs["channel_names"]

    @property
    def class_names(self) -> list[str]:
        return self.attrs["class_names"]

    @property
    def mean(self) -> np.ndarray:
        return read_checked(self.group["stats"]["mean"], 0, len(self.channel_names),
                            unit="channel")

    @property
    def std(self) -> np.ndarray:
        return read_checked(self.group["stats"]["std"], 0, len(self.channel_names),
                            unit="channel")

    @property
    def paths(self) -> np.ndarray:
        return read_checked(self.group["paths"], 0, self._n)

    def shard_reader(self, name: str) -> ShardReader | None:
        """The direct shard reader of fixed-layout array ``name`` (None: read it through
        zarr, e.g. on an fsspec URL); it checks what :func:`read_checked` checks."""
        return None if is_url(self.path) else ShardReader.open(Path(self.path) / name)


class ImageStore(StoreGroup):
    """Read access to an image store: ``len(store)``, ``store[i]`` → ``(cube, label)``.

    ``cube`` is ``(C, Hb, Wb)`` int16 for full chroma, or ``(luma, chroma)`` for native.
    Stored values are raw coefficients; :attr:`mean` and :attr:`std` ``(C,)`` are the
    per-channel statistics to normalize with at load time. Opening also reads (and checks)
    the ragged parts' ``offset`` / ``shape`` index: sample ``i`` starts where sample
    ``i - 1`` ends, and the flat data holds them all.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.parts = [
            Part(p["name"], p["channels"], tuple(p["grid"]) if p["grid"] else None)
            for p in self.attrs["parts"]
        ]
        self._index = {
            p.name: self._ragged_index(self.group[p.name]) for p in self.parts if p.grid is None
        }
        self._readers: dict[str, ShardReader | None] = {}

    def _ragged_index(self, pg: zarr.Group) -> tuple[np.ndarray, np.ndarray]:
        n = self._n
        offsets = read_checked(pg["offset"], 0, n)
        shapes = read_checked(pg["shape"], 0, n)
        sizes = shapes.astype(np.int64).prod(axis=1)
        ends = np.cumsum(sizes)
        bad = np.flatnonzero((offsets != ends - sizes) | (shapes < 0).any(axis=1))
        if bad.size:
            raise StoreError(
                f"damaged store {where(pg['offset'])}, sample {int(bad[0])}: offset "
                f"{int(offsets[bad[0]])} and shape {shapes[bad[0]].tolist()} do not follow the "
                f"previous sample ({bad.size} samples affected)"
            )
        end = int(ends[-1]) if n else 0
        if pg["data"].shape[0] < end:
            raise StoreError(f"damaged store {where(pg['data'])} has {pg['data'].shape[0]} "
                             f"elements, the committed samples need {end}")
        return offsets, shapes

    @property
    def layout(self) -> str:
        return self.attrs["layout"]

    def _part(self, part: Part, i: int) -> np.ndarray:
        if part.grid is not None:
            if part.name not in self._readers:
                self._readers[part.name] = self.shard_reader(part.name)
            reader = self._readers[part.name]
            if reader is None:
                return read_checked(self.group[part.name], i, i + 1)[0]
            out = np.empty((part.channels, *part.grid), reader.dtype)
            reader.read(np.array([i]), [out], self._n)
            return out
        offsets, shapes = self._index[part.name]
        shape = tuple(int(s) for s in shapes[i])
        start = int(offsets[i])
        flat = read_checked(self.group[part.name]["data"], start, start + math.prod(shape),
                            affected=f"sample {i}")
        return flat.reshape(shape)

    def cube(self, i: int) -> np.ndarray | tuple[np.ndarray, ...]:
        """The cube of sample ``i``."""
        if not -self._n <= i < self._n:
            raise IndexError(f"sample {i} out of range for a store of {self._n}")
        i %= self._n
        parts = tuple(self._part(p, i) for p in self.parts)
        return parts[0] if len(parts) == 1 else parts

    def __getitem__(self, i: int) -> tuple[np.ndarray | tuple[np.ndarray, ...], int]:
        return self.cube(i), int(self.labels[i])


def open_store(path: str | Path) -> ImageStore:
    """Open an image store for reading (see :class:`ImageStore`); raises
    :class:`~freqdata.errors.StoreError` if it is not one or its index is damaged."""
    return ImageStore(path)
