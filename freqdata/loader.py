"""Streaming stores into PyTorch: a map-style ``Dataset``, a batch sampler, a ``DataLoader``.

The one batch iterator of freqdata's stores: DCT image stores and RGB stores
(:mod:`freqdata.store.rgb`) alike, or a subset of a store's rows (``rows=``, with per-sample
targets ``labels=``), and the instances of mask stores (:class:`MaskDataset`); the trainers
read through it (docs/loader.md, "Batch format").

The API (``make_loader`` is all most training loops need)::

    loader = make_loader("train.zarr", batch_size=256, seed=0)   # rank/world from torch.distributed
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:
            batch = to_device(batch, "cuda")    # non_blocking copies (pinned when CUDA exists)
            x, y = batch["cubes"], batch["labels"]   # (B, C, Hb, Wb) int16, (B,) int64

Batches are dicts of tensors, one entry per store part named after it, plus ``labels`` and
``indices`` (positions in the dataset: store rows unless ``rows=`` picks a subset):

* RGB stores (``images`` part): ``images`` ``(B, 3, H, W)`` uint8;
* full chroma (``cubes`` part): ``cubes`` ``(B, C, Hb, Wb)`` int16 raw coefficients (int8
  with ``transport=``, see :mod:`freqdata.transport`), ``labels`` ``(B,)`` int64 (-1 = none),
  ``indices`` ``(B,)`` int64 store rows;
* native chroma (``luma`` + ``chroma`` parts, ragged): ``luma`` ``(B, Cy, hb, wb)``,
  ``chroma`` ``(B, Cc, hc, wc)`` int16 and ``chroma_factor`` ``(B, 2)`` int64, each sample's
  ``(vertical, horizontal)`` chroma subsampling (1 = 4:4:4, 2 = 4:2:0 ...), derived from
  the stored grids;
* ragged stores with ``crop_blocks`` also give ``shapes`` ``(B, 2)`` int64 (the sample's
  stored ``(Hb, Wb)``) and ``origins`` ``(B, 2)`` int64 (block row/column of the crop's top
  left corner in the sample); ragged stores without ``crop_blocks`` give *lists* of
  ``(C, Hb_i, Wb_i)`` tensors instead of stacked ones (batch_size 1, or a model that
  takes lists).

**Reading in bulk.** zarr costs ~0.5-1.5 ms per call (docs/benchmarks.md), so the loader
never reads one sample per call: the sampler hands whole batches of row indices to the
dataset (:meth:`StoreDataset.read_batch`, also torch's ``__getitems__``), which reads them in
one pass. Fixed-layout stores on a local disk are read by :class:`freqdata.shards.ShardReader`:
each shard's index is read once (crc32c-checked, cached), the wanted inner chunks are read
with ``preadv`` (one read when they cover most of the span)
and Blosc-decoded by c-blosc's thread-safe ``blosc_decompress_ctx`` (numcodecs' own
library, called through ctypes, which releases the GIL) straight into their rows of the
batch tensor. Anything else (remote stores, other codecs, ragged data) goes through zarr,
one call per run of consecutive rows. Decoding is the cost that remains: ~240 µs per
dctnet-24 56x56 sample (Blosc zstd-1, 150 KB) on this project's 2-core EPYC VM.

**Where batches are made** (``make_loader``): ``threads=n`` (the default, n = CPUs, at
most 8, divided among ``LOCAL_WORLD_SIZE`` ranks) reads batches in a thread pool of the
main process, ``n * prefetch_factor`` batches ahead; with CUDA they are decoded straight into
pinned memory, otherwise into a pool of reused buffers (fresh 38 MB buffers cost ~15-20 %
in page faults); no process boundary, no shared memory. ``num_workers=n`` uses ordinary
DataLoader worker processes instead (each decodes into a fresh shared-memory tensor that
the main process maps). Measured on the ants/bees ResNet store (dctnet-24, 56x56, batch
256, 2-core EPYC VM otherwise idle; ``freqdata.bench.loader``, two runs): 2 threads
6,840-7,340 samples/s = 3,420-3,670 per core; in-process, 1 core 3,630-3,850; 2 worker
processes 4,870-4,960 = 2,430-2,480 per core (shared-memory allocation and page faults
cost ~30 %); the naive per-sample ``ImageStore[i]`` loop 370-400 (threads: 18x), bulk reads
through zarr 890-1,020.

**Order** (``order=``), deterministic by ``seed`` and the epoch (:meth:`StoreLoader.set_epoch`):

* ``"random"``: an exact uniform permutation, identical to
  ``torch.utils.data.DistributedSampler(shuffle=True, seed, drop_last)`` for every rank and
  epoch (rank ``r`` takes ``perm[r::world_size]`` after padding by repetition);
* ``"quasi"``: shards (``shard_size`` consecutive rows, the store's shard of 64 for fixed
  stores) in a random order, the resulting row sequence cut into ``world_size`` contiguous,
  equal slices (padding by repetition, as DistributedSampler), then samples shuffled within
  windows of ``window`` shards (FFCV's QUASI_RANDOM, webdataset's shuffle buffer). Reads stay
  shard-local (a batch touches about ``batch_size / window`` rows of each of ``window`` or
  so shards), which matters on network filesystems and object stores.

Both give every rank a disjoint slice of equal size (``ceil(N / world_size)`` samples, the
padding repeats the first rows of the epoch's sequence; ``drop_last=True`` instead drops
the tail so that ``N`` divides evenly, and drops the last incomplete batch). Within a batch
samples keep the sampler's order. ``shuffle=False`` reads rows in store order (``random``:
DistributedSampler's interleaving; ``quasi``: contiguous slices).

The default order is ``"random"``: on a local disk both orders read at the same rate
(measured, 2 threads: random 6,840 / 7,340, quasi 5,920 (another job running) / 7,130
samples/s; in-process: random 3,850 / 3,630, quasi 3,770 / 3,880), so the exact permutation
costs nothing there; ``"quasi"`` is for stores on network filesystems or object stores.

**Crops for ragged stores** (``crop_blocks=(hb, wb)``, done on the CPU side): ``crop="center"``
takes the block-aligned centre (offset ``(Hb - hb) // 2``), ``crop="random"`` a uniformly
drawn block offset (seeded per batch from ``seed``, epoch, rank and batch number, so any
``num_workers`` or ``threads`` gives the same crops). A sample smaller than the crop is
placed at the top left and zero-padded at the bottom/right (the encoder's own padding side); zero
coefficients are flat mid-grey blocks (sample value 128). For native chroma the luma offset
is a multiple of the sample's chroma factor and chroma is cropped at ``offset / factor``, so
the two stay aligned; chroma is ``ceil(hb / f)`` blocks, placed top left in a chroma grid of
``crop_blocks // chroma_factor`` when the loader's ``chroma_factor`` is given (every sample
must then have that factor, grayscale excepted) and of ``crop_blocks`` otherwise (mixed
4:4:4 / 4:2:0 stores; :func:`freqdata.transforms.upsample_chroma` takes the per-sample
factors). ``crop_blocks`` on a fixed store crops the same way.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from freqdata.errors import StoreError, UsageError
from freqdata.shards import ShardReader, samples_text
from freqdata.store import ImageStore, Part
from freqdata.store.layout import storage_rows
from freqdata.store.reader import read_checked, read_rows
from freqdata.store.rgb import RGBStore, is_rgb_store

__all__ = [
    "DEFAULT_MODE",
    "DEFAULT_ORDER",
    "ORDERS",
    "BatchReader",
    "BatchRequest",
    "MaskDataset",
    "StoreDataset",
    "StoreLoader",
    "StoreSampler",
    "make_loader",
    "open_image_store",
    "to_device",
]

ORDERS = ("random", "quasi")
DEFAULT_ORDER = "random"
DEFAULT_MODE = "threads"  # or "processes": see make_loader and the module docstring
DEFAULT_WINDOW = 8  # shards per quasi-random shuffle window
DEFAULT_SHARD = 64  # rows per "shard" for stores without sharding (ragged)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def open_image_store(path: str | Path) -> ImageStore:
    """The store at ``path`` as the reader of its kind: an :class:`~freqdata.store.rgb.RGBStore`
    for an RGB store, else an :class:`~freqdata.store.ImageStore` (DCT cubes);
    :class:`~freqdata.errors.StoreError` when it is neither."""
    return RGBStore(path) if is_rgb_store(path) else ImageStore(path)


class _RaggedPart:
    """Bulk reads of a ragged part: one zarr call per run of rows adjacent in the flat data."""

    def __init__(self, group: Any, offsets: np.ndarray, shapes: np.ndarray) -> None:
        self.data = group["data"]
        self.offsets = offsets.astype(np.int64)
        self.shapes = shapes.astype(np.int64)
        self.sizes = self.shapes.prod(axis=1)

    def read(self, rows: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(rows)
        order = np.argsort(self.offsets[rows], kind="stable")
        k = 0
        while k < len(order):
            first = k
            end = self.offsets[rows[order[k]]] + self.sizes[rows[order[k]]]
            while k + 1 < len(order) and self.offsets[rows[order[k + 1]]] <= end:
                k += 1
                r = rows[order[k]]
                end = max(end, self.offsets[r] + self.sizes[r])
            start = self.offsets[rows[order[first]]]
            which = samples_text(rows[order[first : k + 1]])
            flat = read_checked(self.data, int(start), int(end), affected=which)
            for j in order[first : k + 1]:
                r = rows[j]
                a = int(self.offsets[r] - start)
                out[j] = flat[a : a + int(self.sizes[r])].reshape(self.shapes[r])
            k += 1
        return out  # type: ignore[return-value]


def _chroma_factor(luma: tuple[int, int], chroma: tuple[int, int]) -> tuple[int, int]:
    """Subsampling factor per axis: the smallest f in (1, 2, 4) with ceil(luma / f) == chroma."""
    out = []
    for lb, cb in zip(luma, chroma, strict=True):
        f = next((f for f in (1, 2, 4) if -(-lb // f) == cb), None)
        if f is None:
            raise StoreError(f"chroma grid {chroma} does not match luma grid {luma}")
        out.append(f)
    return out[0], out[1]


def _place(src: np.ndarray, dst: np.ndarray, oy: int, ox: int) -> None:
    """Copy ``src[:, oy:oy+h, ox:ox+w]`` into ``dst`` (C, h, w); the rest of dst is zero."""
    _, h, w = dst.shape
    part = src[:, oy : oy + h, ox : ox + w]
    ph, pw = part.shape[1:]
    dst[:, :ph, :pw] = part
    if ph < h:
        dst[:, ph:] = 0
    if pw < w:
        dst[:, :ph, pw:] = 0


def _torch_dtype(dtype: Any) -> torch.dtype:
    """The torch dtype of a stored numpy dtype (int16 cubes, uint8 RGB images)."""
    return torch.from_numpy(np.empty(0, np.dtype(dtype).newbyteorder("="))).dtype


def _offset(rng: np.random.Generator | None, size: int, crop: int, step: int) -> int:
    """Block offset of a crop of ``crop`` from ``size`` blocks, a multiple of ``step``."""
    room = max(size - crop, 0)
    k = (room // 2) // step if rng is None else int(rng.integers(0, room // step + 1))
    return k * step


def _shared(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A tensor in shared memory: what a DataLoader worker hands to the main process
    without a copy (as torch's own collate allocates it)."""
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).itemsize
    storage = torch.UntypedStorage._new_shared(nbytes)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


class _Pool:
    """Reusable batch buffers of one process (the main one: in-process and thread modes).

    A fresh 38 MB batch costs page faults worth ~15-20 % of its decoding (measured); a
    buffer is handed out as ``torch.from_numpy(view)`` of a pooled array and is free again
    once that view is gone, i.e. once no tensor (or view of one) uses it any more (tracked
    with a weak reference, not reference counts). At most ``cap`` buffers per shape are
    kept; beyond that, fresh ones are allocated and not kept.
    """

    def __init__(self, cap: int = 8) -> None:
        self.cap = cap
        self._slots: dict[tuple[Any, ...], list[list[Any]]] = {}
        self._lock = threading.Lock()

    def tensor(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        key = (tuple(shape), dtype)
        with self._lock:
            slots = self._slots.setdefault(key, [])
            slot = next((s for s in slots if s[1] is None or s[1]() is None), None)
            if slot is None:
                slot = [torch.empty(shape, dtype=dtype).numpy(), None]
                if len(slots) < self.cap:
                    slots.append(slot)
            view = slot[0].view()
            slot[1] = weakref.ref(view)
        return torch.from_numpy(view)


@runtime_checkable
class BatchReader(Protocol):
    """The reader protocol :func:`make_loader` serves: ``len()`` samples and
    ``read_batch(positions, seed)`` → one batch dict (docs/loader.md, "Batch format"), read
    in bulk. :class:`StoreDataset` and :class:`MaskDataset` implement it; so can a reader of
    anything else (e.g. :class:`freqdata.augment.onthefly.JpegDataset`). Optional attributes
    the loader uses when present: ``shard_size`` (rows per shard, for ``order="quasi"``) and
    ``pin_memory`` (set in thread mode: allocate batches pinned)."""

    def __len__(self) -> int: ...

    def read_batch(
        self, indices: Sequence[int] | np.ndarray, seed: int | None = None
    ) -> dict[str, Any]: ...


class BatchRequest(NamedTuple):
    """What the sampler hands to a worker: store rows and the batch's random seed."""

    indices: np.ndarray
    seed: int


class _RowsDataset(Dataset):
    """A map-style dataset over a :class:`BatchReader`'s :meth:`read_batch`: ``ds[i]`` and
    ``ds.__getitems__(indices)`` are rows of one bulk read (never one read per sample)."""

    def read_batch(
        self, indices: Sequence[int] | np.ndarray, seed: int | None = None
    ) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        batch = self.read_batch(indices)
        return [{k: v[j] for k, v in batch.items()} for j in range(len(indices))]


class StoreDataset(_RowsDataset):
    """A map-style dataset over a store of samples: an image store (fixed or ragged layout,
    full or native chroma) or an RGB store, or a subset of its rows.

    The reader protocol: :meth:`read_batch` ``(positions)`` → one batch dict (docs/loader.md,
    "Batch format"), read in bulk (shard-level reads, never one call per sample); it is what
    :func:`make_loader` uses (no collate copy). ``dataset[i]`` → one sample dict (the batch
    dict without the batch axis); ``dataset.__getitems__(positions)`` → a list of those
    (torch's batched-fetch hook, so a plain ``DataLoader(dataset, batch_size=...)`` also
    reads in bulk).

    ``rows``: the store rows this dataset serves, ``(M,)`` int (position ``i`` is store row
    ``rows[i]``; default: every row). ``labels``: ``(M, ...)`` per-position targets that
    replace the store's class labels in ``batch["labels"]`` (e.g. label maps; dtype kept).
    ``crop_blocks=(h, w)``: crop or zero-pad every sample to that grid, in the store's grid
    units (8x8 blocks of a DCT store, pixels of an RGB store; needed to stack ragged
    samples); ``crop``: ``"center"`` or ``"random"`` (grid-aligned, seeded per batch);
    ``crop_step``: random offsets are multiples of it (grid units; native chroma also keeps
    them multiples of the chroma factor). ``chroma_factor=(fv, fh)``: native chroma stores
    only; compact chroma grid ``ceil(hb / fv) x ceil(wb / fh)``, every sample must have that
    subsampling (or be grayscale). ``transport``: an encoder with ``encode(x, out=)`` (int16
    ``(B, C, H, W)`` → int8, :class:`freqdata.transport.Int8Transport`) applied to
    ``cubes`` (int8 then). The store is opened lazily in each process (workers never share
    zarr handles).
    """

    def __init__(
        self,
        store: str | Path | ImageStore,
        *,
        rows: Sequence[int] | np.ndarray | None = None,
        labels: np.ndarray | None = None,
        crop_blocks: tuple[int, int] | None = None,
        crop: Literal["center", "random"] = "center",
        crop_step: int = 1,
        chroma_factor: tuple[int, int] | None = None,
        transport: Any = None,
    ) -> None:
        self.path = store.path if isinstance(store, ImageStore) else str(store)
        if crop not in ("center", "random"):
            raise UsageError(f"crop must be 'center' or 'random', got {crop!r}")
        self.crop_blocks = tuple(int(v) for v in crop_blocks) if crop_blocks else None
        if self.crop_blocks and min(self.crop_blocks) < 1:
            raise UsageError(f"crop_blocks must be positive, got {crop_blocks}")
        if int(crop_step) < 1:
            raise UsageError(f"crop_step must be positive, got {crop_step}")
        self.crop = crop
        self.crop_step = int(crop_step)
        self.chroma_factor = tuple(chroma_factor) if chroma_factor else None
        self.transport = transport
        self.pin_memory = False  # set by make_loader's thread mode (allocate batches pinned)
        self._store: ImageStore | None = store if isinstance(store, ImageStore) else None
        self._kind: type[ImageStore] = type(store) if isinstance(store, ImageStore) else (
            RGBStore if is_rgb_store(self.path) else ImageStore
        )
        self._pid = os.getpid()
        s = self.store
        self.layout = s.layout
        self.parts: list[Part] = s.parts
        self.native = [p.name for p in s.parts] == ["luma", "chroma"]
        self.shard_size = DEFAULT_SHARD
        if self.layout == "fixed":
            self.shard_size = int((s.group[self.parts[0].name].shards or (DEFAULT_SHARD,))[0])
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.rows is not None and self.rows.size and (
            self.rows.min() < 0 or self.rows.max() >= len(s)
        ):
            raise UsageError(f"rows must lie in [0, {len(s)}) for {self.path}")
        self._n = len(s) if self.rows is None else len(self.rows)
        self.targets = None if labels is None else np.asarray(labels)
        if self.targets is not None and len(self.targets) != self._n:
            raise UsageError(f"labels has {len(self.targets)} entries for {self._n} samples")
        if transport is not None and self._kind is RGBStore:
            raise UsageError("transport applies to DCT cubes, not to an RGB store")
        if self.chroma_factor and not self.native:
            raise UsageError("chroma_factor applies to native-chroma stores only")
        if self.chroma_factor and self.crop_blocks:
            fv, fh = self.chroma_factor
            if self.crop_blocks[0] % fv or self.crop_blocks[1] % fh:
                raise UsageError(f"crop_blocks {crop_blocks} not divisible by chroma_factor")

    # -- per-process state -------------------------------------------------------------------
    @property
    def store(self) -> ImageStore:
        """The opened store (reopened after a fork or in a spawned worker)."""
        if self._store is None or self._pid != os.getpid():
            self._store = self._kind(self.path)
            self._pid = os.getpid()
            self.__dict__.pop("_readers", None)
            self.__dict__.pop("_pool", None)
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None
        state.pop("_readers", None)
        state.pop("_pool", None)
        return state

    def _reader(self, part: Part) -> ShardReader | _RaggedPart | Any:
        s = self.store
        readers = self.__dict__.setdefault("_readers", {})
        if part.name not in readers:
            if part.grid is not None:
                fast = ShardReader.open(Path(s.path) / part.name)
                readers[part.name] = fast if fast is not None else s.group[part.name]
            else:
                off, shp = s._index[part.name]
                readers[part.name] = _RaggedPart(s.group[part.name], off, shp)
        return readers[part.name]

    def _alloc(self, shape: tuple[int, ...], dtype: torch.dtype, *, out: bool) -> torch.Tensor:
        """``out``: a batch tensor handed to the caller — shared memory in a worker process,
        pinned when ``pin_memory`` (torch's caching host allocator: safe with non_blocking
        copies), else a pooled buffer; otherwise internal scratch (pooled)."""
        if out and get_worker_info() is not None:
            return _shared(shape, dtype)
        if out and self.pin_memory:
            return torch.empty(shape, dtype=dtype, pin_memory=True)
        pool = self.__dict__.get("_pool")
        if pool is None:
            pool = self.__dict__["_pool"] = _Pool()
        return pool.tensor(shape, dtype)

    def __len__(self) -> int:
        return self._n

    @property
    def labels(self) -> np.ndarray:
        """Per-position labels: the ``labels`` given, else the store's ``(N,)`` int64 class
        indices (-1 = unlabelled) of the dataset's rows."""
        if self.targets is not None:
            return self.targets
        return self.store.labels if self.rows is None else self.store.labels[self.rows]

    # -- reading -----------------------------------------------------------------------------
    def read_batch(
        self, indices: Sequence[int] | np.ndarray, seed: int | None = None
    ) -> dict[str, Any]:
        """Read positions ``indices`` (any order, repeats allowed) as one batch dict
        (docs/loader.md, "Batch format"): one entry per store part, named after it
        (``cubes``, ``images``, or ``luma`` + ``chroma``), ``labels``, ``indices`` (the
        positions) and the crop/chroma extras.

        ``seed`` seeds the random crops (``crop="random"``); None draws a fresh seed.
        """
        pos = np.asarray(indices, dtype=np.int64).reshape(-1)
        if pos.size and (pos.min() < -self._n or pos.max() >= self._n):
            raise IndexError(f"position out of range for a dataset of {self._n}")
        pos = pos % max(self._n, 1)
        rows = pos if self.rows is None else self.rows[pos]
        rng = np.random.default_rng(seed) if self.crop == "random" else None
        s = self.store
        out: dict[str, Any] = {}
        if self.layout == "fixed":
            out[self.parts[0].name] = self._read_fixed(rows, rng)
        elif self.native:
            out.update(self._read_native(rows, rng))
        else:
            out.update(self._read_ragged(rows, rng))
        if self.targets is not None:
            out["labels"] = torch.from_numpy(np.ascontiguousarray(self.targets[pos]))
        else:
            out["labels"] = torch.from_numpy(s.labels[rows].astype(np.int64))
        out["indices"] = torch.from_numpy(pos.copy())
        return out

    def _encode(self, cubes: torch.Tensor) -> torch.Tensor:
        if self.transport is None:
            return cubes
        t = self._alloc(tuple(cubes.shape), torch.int8, out=True)
        self.transport.encode(cubes.numpy(), out=t.numpy())
        return t

    def _read_fixed(self, rows: np.ndarray, rng: np.random.Generator | None) -> torch.Tensor:
        part = self.parts[0]
        reader = self._reader(part)
        c, hb, wb = part.channels, *part.grid
        dtype = _torch_dtype(reader.dtype)
        direct = self.crop_blocks is None and self.transport is None
        if direct:
            t = self._alloc((len(rows), c, hb, wb), dtype, out=True)
            full = t.numpy()
        else:
            scratch = self._alloc((len(rows), c, hb, wb), dtype, out=False)
            full = scratch.numpy()
        if isinstance(reader, ShardReader):
            reader.read(rows, list(full), self._n)
        else:
            _zarr_rows(reader, rows, full)
        if direct:
            return t
        if self.crop_blocks is None:
            return self._encode(torch.from_numpy(full))
        h, w = self.crop_blocks
        t = self._alloc((len(rows), c, h, w), dtype, out=self.transport is None)
        dst = t.numpy()
        step = self.crop_step if rng is not None else 1
        for j in range(len(rows)):
            oy, ox = _offset(rng, hb, h, step), _offset(rng, wb, w, step)
            _place(full[j], dst[j], oy, ox)
        return self._encode(t)

    def _read_ragged(self, rows: np.ndarray, rng: np.random.Generator | None) -> dict[str, Any]:
        part = self.parts[0]
        cubes = self._reader(part).read(rows)
        if self.crop_blocks is None:
            return {"cubes": [torch.from_numpy(np.ascontiguousarray(c)) for c in cubes]}
        h, w = self.crop_blocks
        t = self._alloc((len(rows), part.channels, h, w), torch.int16, out=self.transport is None)
        dst = t.numpy()
        shapes = np.zeros((len(rows), 2), np.int64)
        origins = np.zeros((len(rows), 2), np.int64)
        step = self.crop_step if rng is not None else 1
        for j, c in enumerate(cubes):
            hb, wb = c.shape[1:]
            oy, ox = _offset(rng, hb, h, step), _offset(rng, wb, w, step)
            _place(c, dst[j], oy, ox)
            shapes[j], origins[j] = (hb, wb), (oy, ox)
        return {
            "cubes": self._encode(t),
            "shapes": torch.from_numpy(shapes),
            "origins": torch.from_numpy(origins),
        }

    def _read_native(self, rows: np.ndarray, rng: np.random.Generator | None) -> dict[str, Any]:
        luma = self._reader(self.parts[0]).read(rows)
        chroma = self._reader(self.parts[1]).read(rows)
        factors = np.zeros((len(rows), 2), np.int64)
        for j, (y, c) in enumerate(zip(luma, chroma, strict=True)):
            factors[j] = _chroma_factor(y.shape[1:], c.shape[1:])
            if self.chroma_factor and tuple(factors[j]) != self.chroma_factor:
                if c.any():
                    raise UsageError(
                        f"sample {rows[j]} has chroma subsampling {tuple(factors[j])}, the "
                        f"loader expects chroma_factor={self.chroma_factor}; pass "
                        "chroma_factor=None (per-sample factors) or encode with chroma='full'"
                    )
                factors[j] = self.chroma_factor  # grayscale: zeros on any grid
        if self.crop_blocks is None:
            return {
                "luma": [torch.from_numpy(np.ascontiguousarray(y)) for y in luma],
                "chroma": [torch.from_numpy(np.ascontiguousarray(c)) for c in chroma],
                "chroma_factor": torch.from_numpy(factors),
            }
        h, w = self.crop_blocks
        gv, gh = self.chroma_factor or (1, 1)
        tl = self._alloc((len(rows), self.parts[0].channels, h, w), torch.int16, out=True)
        tc = self._alloc(
            (len(rows), self.parts[1].channels, h // gv, w // gh), torch.int16, out=True
        )
        dl, dc = tl.numpy(), tc.numpy()
        shapes = np.zeros((len(rows), 2), np.int64)
        origins = np.zeros((len(rows), 2), np.int64)
        for j, (y, c) in enumerate(zip(luma, chroma, strict=True)):
            fv, fh = (int(f) for f in factors[j])
            hb, wb = y.shape[1:]
            step = self.crop_step if rng is not None else 1
            sv, sh = math.lcm(fv, step), math.lcm(fh, step)
            oy, ox = _offset(rng, hb, h, sv), _offset(rng, wb, w, sh)
            _place(y, dl[j], oy, ox)
            ch, cw = -(-h // fv), -(-w // fh)
            dc[j] = 0
            if c.any() or not self.chroma_factor:
                _place(c, dc[j, :, :ch, :cw], oy // fv, ox // fh)
            shapes[j], origins[j] = (hb, wb), (oy, ox)
        return {
            "luma": tl,
            "chroma": tc,
            "chroma_factor": torch.from_numpy(factors),
            "shapes": torch.from_numpy(shapes),
            "origins": torch.from_numpy(origins),
        }


class MaskDataset(_RowsDataset):
    """The instances of a mask store (docs/masks.md) with the reader protocol of
    :class:`StoreDataset`, so :func:`make_loader` serves them like an image store.

    :meth:`read_batch` ``(positions)`` → ``{"vectors"`` ``(B, n)`` float32 DCT-Mask vectors,
    ``"patch_vectors"`` ``(B, 14, 14, 6)`` float32 and ``"patch_labels"`` ``(B, 14, 14)``
    uint8 (stores encoded with patches), ``"labels"`` ``(B,)`` int64 COCO category ids,
    ``"boxes"`` ``(B, 4)`` float64 xywh, ``"image_ids"`` ``(B,)`` int64, ``"indices"``
    ``(B,)`` int64 instance rows``}``: one zarr call per array and batch (absent or damaged
    chunks raise :class:`~freqdata.errors.StoreError`). ``store``: a
    :class:`~freqdata.masks.store.MaskStore`, a mask store's path or an image store holding
    one (``--into``). Opened lazily in each process, as :class:`StoreDataset`.
    """

    def __init__(self, store: Any) -> None:
        from freqdata.masks.store import MaskStore

        self._store: Any = store if isinstance(store, MaskStore) else MaskStore(store)
        self.path = self._store.path
        self._pid = os.getpid()
        self.patch = bool(self._store.config["patch"])
        self.shard_size = storage_rows(self._store.vectors)
        self.pin_memory = False  # unused: batches are fresh arrays (not pinned in thread mode)
        self._n = len(self._store)

    @property
    def store(self) -> Any:
        """The opened :class:`~freqdata.masks.store.MaskStore` (reopened after a fork)."""
        if self._store is None or self._pid != os.getpid():
            from freqdata.masks.store import MaskStore

            self._store = MaskStore(self.path)
            self._pid = os.getpid()
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None}

    def __len__(self) -> int:
        return self._n

    @property
    def labels(self) -> np.ndarray:
        """``(M,)`` int64 COCO category id of every instance."""
        return self.store.category_ids

    def read_batch(
        self, indices: Sequence[int] | np.ndarray, seed: int | None = None
    ) -> dict[str, Any]:
        """Instance rows ``indices`` (any order, repeats allowed) as one batch dict (class
        docstring); ``seed`` is accepted for the loader's protocol and unused."""
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < -self._n or rows.max() >= self._n):
            raise IndexError(f"instance out of range for a store of {self._n}")
        rows = rows % max(self._n, 1)
        s = self.store
        out: dict[str, Any] = {"vectors": torch.from_numpy(read_rows(s.vectors, rows))}
        if self.patch:
            out["patch_vectors"] = torch.from_numpy(read_rows(s.patch_vectors, rows))
            out["patch_labels"] = torch.from_numpy(read_rows(s.patch_labels, rows))
        out["labels"] = torch.from_numpy(s.category_ids[rows].astype(np.int64))
        out["boxes"] = torch.from_numpy(s.boxes[rows].astype(np.float64))
        out["image_ids"] = torch.from_numpy(s.image_ids[rows].astype(np.int64))
        out["indices"] = torch.from_numpy(rows.copy())
        return out


def _zarr_rows(arr: Any, rows: np.ndarray, out: np.ndarray) -> None:
    """Fallback for non-local/unsupported arrays: one zarr call per run of consecutive rows."""
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    bounds = np.flatnonzero(np.diff(srt) > 1) + 1
    for group in np.split(np.arange(len(srt)), bounds):
        a, b = int(srt[group[0]]), int(srt[group[-1]]) + 1
        block = read_checked(arr, a, b)
        out[order[group]] = block[srt[group] - a]


# --------------------------------------------------------------------------------------------
# order
# --------------------------------------------------------------------------------------------
def _dist_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Rank and world size: given ones, else torch.distributed's when initialised, else 0/1."""
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
    rank = 0 if rank is None else int(rank)
    world_size = 1 if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise UsageError(f"invalid rank {rank} for world size {world_size}")
    return rank, world_size


def _pad(seq: np.ndarray, total: int) -> np.ndarray:
    """DistributedSampler's padding: repeat the sequence from its start up to ``total``."""
    if total <= len(seq):
        return seq[:total]
    reps = math.ceil(total / len(seq))
    return np.tile(seq, reps)[:total]


class StoreSampler(Sampler[BatchRequest]):
    """Batches of store rows for one rank: deterministic by seed and epoch (module docstring).

    Yields :class:`BatchRequest` ``(indices (B,) int64, seed)``; ``len()`` is the number of
    batches of this rank in an epoch. :meth:`rank_indices` is the rank's whole epoch order.
    ``endless``: one iteration runs epochs ``epoch, epoch + 1, ...`` back to back without
    end, advancing :attr:`epoch` as it goes (benchmarks: a small store does not restart the
    worker pipeline every few batches).
    """

    def __init__(
        self,
        n: int,
        *,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        order: Literal["random", "quasi"] = DEFAULT_ORDER,
        shard_size: int = DEFAULT_SHARD,
        window: int = DEFAULT_WINDOW,
        endless: bool = False,
    ) -> None:
        if order not in ORDERS:
            raise UsageError(f"unknown order {order!r}: choose one of {', '.join(ORDERS)}")
        if batch_size < 1 or shard_size < 1 or window < 1:
            raise UsageError("batch_size, shard_size and window must be positive")
        if n < 1:
            raise StoreError("cannot sample from an empty store")
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch
        self.rank, self.world_size = _dist_defaults(rank, world_size)
        self.drop_last = drop_last
        self.order = order
        self.shard_size = shard_size
        self.window = window
        self.endless = endless
        if drop_last and n % self.world_size:
            self.num_samples = math.ceil((n - self.world_size) / self.world_size)
        else:
            self.num_samples = math.ceil(n / self.world_size)
        self.total_size = self.num_samples * self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (reshuffles; same epoch and seed → same order on every rank)."""
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return g

    def rank_indices(self) -> np.ndarray:
        """This rank's rows for the current epoch, in reading order, ``(num_samples,)`` int64."""
        ws, r = self.world_size, self.rank
        if self.order == "random" or not self.shuffle:
            if self.shuffle:
                seq = torch.randperm(self.n, generator=self._generator()).numpy()
            else:
                seq = np.arange(self.n, dtype=np.int64)
            seq = _pad(seq, self.total_size)
            if self.order == "random":
                return seq[r : self.total_size : ws].astype(np.int64)
            return seq[r * self.num_samples : (r + 1) * self.num_samples].astype(np.int64)
        g = self._generator()
        shards = math.ceil(self.n / self.shard_size)
        perm = torch.randperm(shards, generator=g).numpy()
        starts = perm * self.shard_size
        seq = np.concatenate(
            [np.arange(a, min(a + self.shard_size, self.n)) for a in starts]
        ).astype(np.int64)
        seq = _pad(seq, self.total_size)
        mine = seq[r * self.num_samples : (r + 1) * self.num_samples].copy()
        win = self.window * self.shard_size
        g2 = torch.Generator()
        g2.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)) + r)
        for a in range(0, len(mine), win):
            piece = mine[a : a + win]
            mine[a : a + win] = piece[torch.randperm(len(piece), generator=g2).numpy()]
        return mine

    def _epoch(self) -> Iterator[BatchRequest]:
        rows = self.rank_indices()
        ss = np.random.SeedSequence([self.seed, self.epoch, self.rank])
        seeds = ss.generate_state(len(self), dtype=np.uint64)
        for b in range(len(self)):
            yield BatchRequest(
                rows[b * self.batch_size : (b + 1) * self.batch_size], int(seeds[b] >> np.uint64(1))
            )

    def __iter__(self) -> Iterator[BatchRequest]:
        yield from self._epoch()
        while self.endless:
            self.epoch += 1
            yield from self._epoch()

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)


# --------------------------------------------------------------------------------------------
# loader
# --------------------------------------------------------------------------------------------
class _Batches(Dataset):
    """Adapter: ``batches[BatchRequest]`` → ``dataset.read_batch(...)`` (DataLoader with
    ``batch_size=None`` calls it once per batch, in a worker process or in the main one;
    ``dataset``: a :class:`BatchReader`).

    Thread mode (``threads > 0``, main process only): :meth:`submit` starts reading a batch
    in a thread pool ahead of time (:class:`_PrefetchSampler` does, ``depth`` batches
    ahead); ``batches[req]`` then waits for that result. Decoding releases the GIL.
    """

    def __init__(self, dataset: BatchReader, threads: int = 0) -> None:
        self.dataset = dataset
        self.threads = threads
        self._pending: dict[int, tuple[BatchRequest, Future]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_pending={}, _pool=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _read(self, req: BatchRequest) -> dict[str, Any]:
        return self.dataset.read_batch(req.indices, seed=req.seed)

    def submit(self, req: BatchRequest) -> None:
        """Start reading ``req`` in the background (thread mode; otherwise a no-op)."""
        if self.threads <= 0:
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="freqdata")
            self._pending[id(req)] = (req, self._pool.submit(self._read, req))

    def discard(self, req: BatchRequest) -> None:
        """Forget a submitted request (the loop stopped early)."""
        with self._lock:
            item = self._pending.pop(id(req), None)
        if item is not None:
            item[1].cancel()

    def __getitem__(self, req: BatchRequest) -> dict[str, Any]:
        with self._lock:
            item = self._pending.pop(id(req), None)
        return item[1].result() if item is not None else self._read(req)

    def __len__(self) -> int:
        return len(self.dataset)


class _PrefetchSampler(Sampler[BatchRequest]):
    """Yields a :class:`StoreSampler`'s requests, having submitted ``depth`` more to ``batches``."""

    def __init__(self, sampler: StoreSampler, batches: _Batches, depth: int) -> None:
        self.sampler = sampler
        self.batches = batches
        self.depth = max(depth, 1)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[BatchRequest]:
        it = iter(self.sampler)
        window: deque[BatchRequest] = deque()
        try:
            for req in itertools.islice(it, self.depth):
                self.batches.submit(req)
                window.append(req)
            while window:
                req = window.popleft()
                for nxt in itertools.islice(it, 1):
                    self.batches.submit(nxt)
                    window.append(nxt)
                yield req
        finally:
            for req in window:
                self.batches.discard(req)


def _identity(batch: Any) -> Any:
    return batch


class _WorkerInit:
    def __init__(self, user: Callable[[int], None] | None) -> None:
        self.user = user

    def __call__(self, worker_id: int) -> None:
        torch.set_num_threads(1)
        if self.user is not None:
            self.user(worker_id)


class StoreLoader(DataLoader):
    """A ``DataLoader`` over a :class:`StoreSampler` with :meth:`set_epoch`."""

    store_dataset: BatchReader

    @property
    def store(self) -> Any:
        """The store read (an :class:`~freqdata.store.ImageStore`,
        :class:`~freqdata.store.rgb.RGBStore` or :class:`~freqdata.masks.store.MaskStore`)."""
        return self.store_dataset.store

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (call before iterating; works with persistent workers)."""
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]


def default_num_workers() -> int:
    """The default thread (or worker) count: the CPUs this process may use, shared among
    the ranks of this node (``LOCAL_WORLD_SIZE``, set by torchrun), at least 1, at most 8."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        local = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    except ValueError:
        local = 1
    return max(1, min((n or 1) // local, 8))


def make_loader(
    store: str | Path | ImageStore | BatchReader | Any,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    order: Literal["random", "quasi"] = DEFAULT_ORDER,
    window: int = DEFAULT_WINDOW,
    num_workers: int | None = None,
    threads: int | None = None,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
    drop_last: bool = False,
    rows: Sequence[int] | np.ndarray | None = None,
    labels: np.ndarray | None = None,
    crop_blocks: tuple[int, int] | None = None,
    crop: Literal["center", "random"] = "center",
    crop_step: int = 1,
    chroma_factor: tuple[int, int] | None = None,
    transport: Any = None,
    worker_init_fn: Callable[[int], None] | None = None,
    multiprocessing_context: Any = None,
    endless: bool = False,
) -> StoreLoader:
    """A ``DataLoader`` yielding batch dicts (docs/loader.md, "Batch format") from a store:
    an image store (DCT cubes), an RGB store (``images``), the instances of a mask store (a
    :class:`~freqdata.masks.store.MaskStore`; a path always opens the image store), or any
    :class:`BatchReader` (:class:`StoreDataset`, :class:`MaskDataset`, ...).

    ``rank``/``world_size``: None reads them from ``torch.distributed`` when initialised
    (else 0/1); every rank gets a disjoint, equal-size share (DistributedSampler semantics).

    Parallelism: ``num_workers > 0`` reads batches in DataLoader worker processes (batches
    come back through shared memory); ``threads > 0`` (with ``num_workers=0``) reads them in
    a thread pool of the main process, ``threads * prefetch_factor`` batches ahead, decoded
    straight into pinned memory when ``pin_memory`` (no shared-memory or pinning copies);
    both 0 reads synchronously. Default (both None): ``DEFAULT_MODE`` with
    :func:`default_num_workers` (chosen by measurement, module docstring).
    ``pin_memory``: None → when CUDA is available; ``persistent_workers``: None →
    ``num_workers > 0``; ``prefetch_factor``: batches in flight per worker or thread (None →
    2). ``drop_last`` drops the uneven tail across ranks and the last incomplete batch.
    ``rows``/``labels``/``crop_blocks``/``crop``/``crop_step``/``chroma_factor``/
    ``transport``: see :class:`StoreDataset`; ``endless``: see :class:`StoreSampler`
    (``len()`` stays one epoch's batches).
    """
    from freqdata.masks.store import MaskStore

    if isinstance(store, MaskStore):
        store = MaskDataset(store)
    reader = isinstance(store, BatchReader)
    if reader and (
        rows is not None or labels is not None or crop_blocks or chroma_factor or transport
    ):
        raise UsageError("rows, labels, crops, chroma_factor and transport are options of an "
                         "image store's StoreDataset; give them to the reader itself")  # fmt: skip
    ds: Any = (
        store
        if reader
        else StoreDataset(
            store,
            rows=rows,
            labels=labels,
            crop_blocks=crop_blocks,
            crop=crop,
            crop_step=crop_step,
            chroma_factor=chroma_factor,
            transport=transport,
        )
    )
    sampler = StoreSampler(
        len(ds),
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
        order=order,
        shard_size=getattr(ds, "shard_size", DEFAULT_SHARD),
        window=window,
        endless=endless,
    )
    if num_workers is None and threads is None:
        n = default_num_workers()
        num_workers, threads = (0, n) if DEFAULT_MODE == "threads" else (n, 0)
    num_workers, threads = num_workers or 0, threads or 0
    if num_workers > 0 and threads > 0:
        raise UsageError("choose worker processes (num_workers) or threads, not both")
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    pin_memory = bool(pin_memory) and torch.cuda.is_available()
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    batches = _Batches(ds, threads)
    if threads > 0 and hasattr(ds, "pin_memory"):
        ds.pin_memory = pin_memory  # decode straight into pinned memory
        depth = threads * (prefetch_factor or 2)
        source: Sampler = _PrefetchSampler(sampler, batches, depth)
    else:
        source = sampler
    loader = StoreLoader(
        batches,
        batch_size=None,
        sampler=source,
        num_workers=num_workers,
        collate_fn=_identity,
        pin_memory=pin_memory and threads == 0,
        persistent_workers=persistent_workers and num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        worker_init_fn=_WorkerInit(worker_init_fn),
        multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
    )
    loader.store_dataset = ds
    return loader


def to_device(batch: Any, device: torch.device | str, *, non_blocking: bool = True) -> Any:
    """Move every tensor of a batch (dicts, lists, tuples nest) to ``device``.

    Copies are ``non_blocking``: asynchronous from pinned memory (``pin_memory=True``);
    synchronise (or use the tensors on the same stream) before touching them on the host.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking=non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device, non_blocking=non_blocking) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch
