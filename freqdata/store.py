"""Zarr v3 image stores: what is written, how it is resumed, and how it is read back.

One Zarr v3 group, readable with plain ``zarr`` (docs/store.md has the full layout):

* fixed geometry → ``cubes`` ``(N, C, Hb, Wb)`` int16;
* geometry ``none`` → ragged parts: a group per part (``cubes``, or ``luma`` + ``chroma`` for
  native chroma) holding ``data`` (flat int16), ``shape`` ``(N, 3)`` int32 and ``offset``
  ``(N,)`` int64, so sample ``i`` is ``data[offset[i]:offset[i] + prod(shape[i])]``;
* ``labels`` ``(N,)`` int64 (-1 = none), ``source_index`` ``(N,)`` int64 (position in the
  input list), ``paths`` ``(N,)`` strings;
* ``stats/{count,mean,m2,std}`` ``(C,)`` float64: per-channel statistics over all blocks;
* attributes ``freqdata``: format, configuration, channel and class names, progress and the
  error log (one entry per failed input: index, path, reason).

Writes are append-only and committed in order: data first, then the ``progress`` attribute.
A crash leaves at most uncommitted rows past the committed count; :meth:`StoreWriter.open`
(resume) truncates them, removing their chunks so the finished store is byte-identical to
an uninterrupted run. ``progress.complete`` is false until :meth:`StoreWriter.finish`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from freqdata.stats import ChannelStats

FORMAT = "freqdata-images"
FORMAT_VERSION = 1
CUBE_DTYPE = np.int16

# Chosen by measurement (docs/store.md, benchmarks/store_layout.py): one sample per inner
# chunk for random access, shards of SHARD_SAMPLES samples to keep the file count low,
# Blosc/zstd level 1 with byte shuffle on int16 (2.1x smaller, as fast to read as lz4).
SHARD_SAMPLES = 64
RAGGED_CHUNK = 1 << 18  # int16 elements per chunk of a ragged part's flat data (512 KiB)
INDEX_CHUNK = 1 << 16


def _compressor() -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.shuffle, typesize=2)


@dataclass
class Progress:
    """What has been committed: inputs consumed, samples written, finished or not."""

    inputs_done: int = 0
    samples: int = 0
    complete: bool = False


@dataclass
class Part:
    """One stored tensor per sample: ``channels`` and, for the fixed layout, its grid."""

    name: str
    channels: int
    grid: tuple[int, int] | None = None  # (Hb, Wb) for fixed, None for ragged


@dataclass
class StoreSpec:
    """Everything that fixes a store's layout, recorded in its attributes."""

    parts: list[Part]
    config: dict[str, Any]
    channel_names: list[str]
    class_names: list[str] = field(default_factory=list)
    inputs_digest: str = ""
    inputs_count: int = 0

    @property
    def layout(self) -> str:
        return "fixed" if self.parts[0].grid is not None else "ragged"

    @property
    def channels(self) -> int:
        return sum(p.channels for p in self.parts)

    def attrs(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "layout": self.layout,
            "parts": [
                {"name": p.name, "channels": p.channels, "grid": list(p.grid) if p.grid else None}
                for p in self.parts
            ],
            "config": self.config,
            "channel_names": self.channel_names,
            "class_names": self.class_names,
            "inputs": {"count": self.inputs_count, "sha256": self.inputs_digest},
        }


def _storage_rows(arr: zarr.Array) -> int:
    """Rows along axis 0 per stored object (shard if sharded, else chunk)."""
    return (arr.shards or arr.chunks)[0]


def _truncate(arr: zarr.Array, n: int) -> None:
    """Shrink ``arr`` to ``n`` rows and delete every stored object past them.

    zarr keeps out-of-bounds chunks on resize; removing them (and rebuilding the edge
    object from its in-bounds rows) makes the result identical to never having written more.
    """
    old = arr.shape[0]
    if old <= n:
        return
    rows = _storage_rows(arr)
    edge = n // rows
    keep = arr[edge * rows : n] if n % rows else None
    store = arr.store_path.store
    tail = "/".join("0" * (arr.ndim - 1))
    for k in range(edge, math.ceil(old / rows)):
        key = f"{arr.path}/c/{k}" + (f"/{tail}" if tail else "")
        _delete_key(store, key)
    arr.resize((n, *arr.shape[1:]))
    if keep is not None:
        arr[edge * rows : n] = keep


def _delete_key(store: Any, key: str) -> None:
    """Delete ``key`` from a zarr store (local stores have a sync API, fsspec ones not)."""
    if hasattr(store, "delete_sync"):
        store.delete_sync(key)
    else:
        from zarr.core.sync import sync

        sync(store.delete(key))


def is_url(path: str | Path) -> bool:
    """True for an fsspec URL (``memory://``, ``s3://``, ``file://``…), false for a path."""
    return "://" in str(path)


def exists(path: str | Path) -> bool:
    """Whether a store (or anything) exists at ``path``, a local path or an fsspec URL."""
    if not is_url(path):
        return Path(path).exists()
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(path))
    return bool(fs.exists(root))


def _append(arr: zarr.Array, rows: np.ndarray) -> None:
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
                    compressors=_compressor(),
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
                    compressors=_compressor(),
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
                _truncate(self.group[p.name], n)
            else:
                pg = self.group[p.name]
                end = 0
                if n:
                    shape = pg["shape"][n - 1]
                    end = int(pg["offset"][n - 1] + np.prod(shape))
                _truncate(pg["data"], end)
                _truncate(pg["shape"], n)
                _truncate(pg["offset"], n)
        for name in ("labels", "source_index", "paths"):
            _truncate(self.group[name], n)

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
                _append(self.group[part.name], np.stack(arrays))
            else:
                pg = self.group[part.name]
                n = pg["shape"].shape[0]
                start = 0
                if n:
                    start = int(pg["offset"][n - 1] + np.prod(pg["shape"][n - 1]))
                sizes = np.array([a.size for a in arrays], dtype=np.int64)
                offsets = start + np.concatenate([[0], np.cumsum(sizes)[:-1]])
                _append(pg["data"], np.concatenate([a.ravel() for a in arrays]))
                _append(pg["shape"], np.array([a.shape for a in arrays], dtype=np.int32))
                _append(pg["offset"], offsets)
        if ok:
            _append(self.group["labels"], np.array([lab for _, _, lab, _ in ok], dtype=np.int64))
            _append(self.group["source_index"], np.array([i for i, *_ in ok], dtype=np.int64))
            _append(self.group["paths"], np.array([p for _, p, _, _ in ok], dtype=str))
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


class StoreGroup:
    """What every freqdata sample store reads the same way (image stores, the trainers' RGB
    stores): the Zarr group, its ``freqdata`` attributes, ``len()``, :attr:`labels` ``(N,)``
    int64, :attr:`paths`, :attr:`mean` / :attr:`std` ``(C,)`` float64, :attr:`config`,
    :attr:`channel_names`, :attr:`class_names`, :attr:`errors`, :attr:`complete`."""

    format: str = FORMAT
    kind: str = "freqdata image store"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.group = zarr.open_group(self.path, mode="r", zarr_format=3)
        attrs = self.group.attrs.get("freqdata")
        if not attrs or attrs.get("format") != self.format:
            raise ValueError(f"{path} is not a {self.kind}")
        self.attrs: dict[str, Any] = attrs
        self.progress = Progress(**attrs["progress"])
        self._n = self.progress.samples
        self.labels: np.ndarray = self.group["labels"][: self._n]

    def __len__(self) -> int:
        return self._n

    @property
    def complete(self) -> bool:
        """False while an encode is running or was interrupted (resume it to finish)."""
        return self.progress.complete

    @property
    def config(self) -> dict[str, Any]:
        return self.attrs["config"]

    @property
    def channel_names(self) -> list[str]:
        return self.attrs["channel_names"]

    @property
    def class_names(self) -> list[str]:
        return self.attrs["class_names"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.attrs["errors"]

    @property
    def mean(self) -> np.ndarray:
        return self.group["stats"]["mean"][:]

    @property
    def std(self) -> np.ndarray:
        return self.group["stats"]["std"][:]

    @property
    def paths(self) -> np.ndarray:
        return self.group["paths"][: self._n]


class ImageStore(StoreGroup):
    """Read access to an image store: ``len(store)``, ``store[i]`` → ``(cube, label)``.

    ``cube`` is ``(C, Hb, Wb)`` int16 for full chroma, or ``(luma, chroma)`` for native.
    Stored values are raw coefficients; :attr:`mean` and :attr:`std` ``(C,)`` are the
    per-channel statistics to normalize with at load time.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.parts = [
            Part(p["name"], p["channels"], tuple(p["grid"]) if p["grid"] else None)
            for p in self.attrs["parts"]
        ]
        self._index = {
            p.name: (
                self.group[p.name]["offset"][: self._n],
                self.group[p.name]["shape"][: self._n],
            )
            for p in self.parts
            if p.grid is None
        }

    @property
    def layout(self) -> str:
        return self.attrs["layout"]

    def _part(self, part: Part, i: int) -> np.ndarray:
        if part.grid is not None:
            return self.group[part.name][i]
        offsets, shapes = self._index[part.name]
        shape = tuple(int(s) for s in shapes[i])
        start = int(offsets[i])
        return self.group[part.name]["data"][start : start + math.prod(shape)].reshape(shape)

    def cube(self, i: int) -> np.ndarray | tuple[np.ndarray, ...]:
        """The cube of sample ``i``."""
        if not -self._n <= i < self._n:
            raise IndexError(f"sample {i} out of range for a store of {self._n}")
        i %= self._n
        parts = tuple(self._part(p, i) for p in self.parts)
        return parts[0] if len(parts) == 1 else parts

    def __getitem__(self, i: int) -> tuple[np.ndarray | tuple[np.ndarray, ...], int]:
        return self.cube(i), int(self.labels[i])


def store_bytes(path: str | Path) -> int:
    """Bytes on disk of a store: every file under ``path`` (a local path or fsspec URL)."""
    if is_url(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(str(path))
        return int(fs.du(root, total=True))
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def open_store(path: str | Path) -> ImageStore:
    """Open an image store for reading (see :class:`ImageStore`)."""
    return ImageStore(path)
