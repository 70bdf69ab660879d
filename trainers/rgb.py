"""RGB stores and their loader: the pixel baseline for the classification trainer.

freqdata's stores hold DCT cubes; the RGB arm of a comparison needs RGB images with the
*same* decode, orientation and geometry. :func:`encode_rgb` writes them with the pixel
path's own decoder: :func:`freqdata.pixels.load_ycbcr` (decode → EXIF orientation → resize
shorter side → centre crop, exactly what ``encode --path pixels --geometry S:C`` does) and
the inverse JFIF conversion (``R = Y + 1.402 (Cr - 128)``, ``G = Y - 0.344136 (Cb - 128) -
0.714136 (Cr - 128)``, ``B = Y + 1.772 (Cb - 128)``, rounded and clipped: libjpeg's own
YCbCr → RGB equations), so the two arms see the same pixels.

Store layout (Zarr v3, the same conventions as freqdata's image stores, docs/store.md)::

    OUT/
      zarr.json        attributes["freqdata"]: format "freqdata-rgb", layout "fixed",
                       parts, config, channel_names ["R", "G", "B"], class_names, inputs,
                       progress, errors
      images           (N, 3, H, W) uint8 — one sample per inner chunk, shards of 64,
                       Blosc zstd-1
      labels           (N,) int64;  source_index (N,) int64;  paths (N,) strings
      stats/{count,mean,m2,std}   (3,) float64 over all pixels (0..255 scale)

The RGB store is small and written in one pass (no resume): rewrite it with
``overwrite=True``.

:func:`make_rgb_loader` yields the same batch dicts as :func:`freqdata.make_loader` (with
``images`` ``(B, 3, h, w)`` uint8 instead of ``cubes``) and uses freqdata's
:class:`~freqdata.loader.StoreSampler`, so with the same ``seed`` and epoch an RGB and a
DCT store of the same inputs are read in the *same order*, batch for batch. Crops are done
on the host (only the crop travels to the device): ``crop="random"`` draws offsets that are
multiples of ``crop_step`` pixels from the batch seed, ``"center"`` takes the centre.
:class:`RGBAugment` then flips (p = 0.5) and normalizes on the device.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import zarr

from freqdata.errors import UsageError
from freqdata.loader import BatchRequest, StoreSampler
from freqdata.pixels import load_ycbcr, parse_geometry
from freqdata.shards import ShardReader
from freqdata.sources import Sources, list_sources
from freqdata.stats import ChannelStats
from freqdata.store import StoreGroup
from freqdata.store.layout import array_options
from freqdata.store.reader import read_rows

__all__ = [
    "RGB_FORMAT",
    "RGBAugment",
    "RGBLoader",
    "RGBStore",
    "encode_rgb",
    "is_rgb_store",
    "make_rgb_loader",
    "ycbcr_to_rgb",
]

RGB_FORMAT = "freqdata-rgb"
SHARD = 64
INDEX_CHUNK = 1 << 16


def ycbcr_to_rgb(planes: np.ndarray) -> np.ndarray:
    """JFIF full-range YCbCr ``(3, H, W)`` uint8 → RGB ``(3, H, W)`` uint8 (rounded, clipped)."""
    y, cb, cr = (p.astype(np.float32) for p in planes)
    cb -= 128.0
    cr -= 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb])
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def encode_rgb(
    src: str | Path | Sources,
    out: str | Path,
    geometry: str = "256:240",
    *,
    overwrite: bool = False,
    batch: int = SHARD,
) -> dict[str, Any]:
    """Write the RGB store ``out`` from a folder of class sub-folders (or a list file).

    ``geometry``: a crop geometry (``S:C``, ``resnet``, ``mobilenet``): every image becomes
    ``(3, C, C)`` uint8. Failing inputs are skipped and recorded (``errors``). Returns a
    summary ``{"out", "inputs", "encoded", "failed", "errors"}``.
    """
    geo = parse_geometry(geometry)
    if geo.crop is None:
        raise UsageError(f"RGB stores need a crop geometry (S:C), got {geometry!r}")
    sources = src if isinstance(src, Sources) else list_sources(src)
    if Path(out).exists() and not overwrite:
        raise UsageError(f"{out} exists: pass overwrite=True to replace it")
    c = geo.crop
    g = zarr.open_group(str(out), mode="w", zarr_format=3)
    images = g.create_array(
        "images",
        shape=(0, 3, c, c),
        dtype=np.uint8,
        chunks=(1, 3, c, c),
        shards=(SHARD, 3, c, c),
        **array_options(1),
        fill_value=0,
        dimension_names=("sample", "channel", "y", "x"),
    )
    arrays = {
        name: g.create_array(name, shape=(0,), dtype=np.int64, chunks=(INDEX_CHUNK,), fill_value=-1,
                             **array_options(8))
        for name in ("labels", "source_index")
    }
    paths_arr = g.create_array("paths", shape=(0,), dtype=str, chunks=(INDEX_CHUNK,),
                               **array_options(1))
    stats = ChannelStats.empty(3)
    errors: list[dict[str, Any]] = []
    rows: list[tuple[int, str, int, np.ndarray]] = []
    n = 0

    def flush() -> None:
        nonlocal n, rows
        if not rows:
            return
        k = len(rows)
        images.resize((n + k, 3, c, c))
        images[n:] = np.stack([r[3] for r in rows])
        for name, col in (("labels", 2), ("source_index", 0)):
            arrays[name].resize((n + k,))
            arrays[name][n:] = np.array([r[col] for r in rows], dtype=np.int64)
        paths_arr.resize((n + k,))
        paths_arr[n:] = np.array([r[1] for r in rows], dtype=str)
        n += k
        rows = []

    for i, (path, label) in enumerate(zip(sources.paths, sources.labels, strict=True)):
        try:
            rgb = ycbcr_to_rgb(load_ycbcr(path, geo).planes)
        except (ValueError, OSError) as e:  # one bad input must not stop the run
            errors.append({"index": i, "path": path, "reason": f"{type(e).__name__}: {e}"})
            continue
        stats = stats.merge(ChannelStats.of(rgb))
        rows.append((i, path, label, rgb))
        if len(rows) == batch:
            flush()
    flush()
    sg = g.create_group("stats")
    for name, value in (("count", stats.n), ("mean", stats.mean), ("m2", stats.m2),
                        ("std", stats.std)):  # fmt: skip
        sg.create_array(name, shape=(3,), dtype=np.float64, fill_value=0.0,
                        **array_options(8))[:] = value
    g.attrs["freqdata"] = {
        "format": RGB_FORMAT,
        "format_version": 2,
        "layout": "fixed",
        "parts": [{"name": "images", "channels": 3, "grid": [c, c]}],
        "config": {
            "geometry": geo.name,
            "colour": "RGB from JFIF YCbCr (freqdata.pixels.load_ycbcr), libjpeg's equations",
            "dtype": "uint8",
        },
        "channel_names": ["R", "G", "B"],
        "class_names": sources.class_names,
        "inputs": {"count": len(sources), "sha256": sources.digest()},
        "progress": {"inputs_done": len(sources), "samples": n, "complete": True},
        "errors": errors,
    }
    return {"out": str(out), "inputs": len(sources), "encoded": n, "failed": len(errors),
            "errors": errors}  # fmt: skip


def is_rgb_store(path: str | Path) -> bool:
    """True when ``path`` is a store written by :func:`encode_rgb`."""
    try:
        meta = json.loads((Path(path) / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("attributes", {}).get("freqdata", {}).get("format") == RGB_FORMAT


class RGBStore(StoreGroup):
    """Read access to an RGB store (the shared accessors of
    :class:`~freqdata.store.StoreGroup`: ``len()``, ``.labels``, ``.paths``, ``.mean`` /
    ``.std`` ``(3,)`` float64 on the 0..255 scale, ``.class_names``, ``.channel_names`` ...),
    ``.grid`` ``(H, W)`` and ``read(rows, out)`` (bulk, into a ``(B, 3, H, W)`` uint8 array)."""

    format = RGB_FORMAT
    kind = "freqdata RGB store (freqdata train rgb-store)"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.grid: tuple[int, int] = tuple(self.attrs["parts"][0]["grid"])  # type: ignore[assignment]
        self._reader: ShardReader | None = self.shard_reader("images")

    def read(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Rows ``rows`` (B,) into ``out`` ``(B, 3, H, W)`` uint8 (direct shard reads; an
        absent or damaged chunk raises :class:`~freqdata.errors.StoreError`)."""
        if self._reader is not None:
            self._reader.read(rows, list(out), self._n)
        else:
            out[...] = read_rows(self.group["images"], rows)


def _crop_offset(rng: np.random.Generator | None, size: int, crop: int, step: int) -> int:
    room = size - crop
    if rng is None:
        return room // 2
    return step * int(rng.integers(0, room // step + 1))


class RGBLoader:
    """Iterable of batch dicts ``{"images": (B, 3, h, w) uint8, "labels": (B,) int64,
    "indices": (B,) int64}`` over an :class:`RGBStore` (see :func:`make_rgb_loader`)."""

    def __init__(
        self,
        store: RGBStore,
        sampler: StoreSampler,
        crop_size: tuple[int, int] | None,
        crop: Literal["center", "random"],
        crop_step: int,
        prefetch: int,
    ) -> None:
        self.store = store
        self.sampler = sampler
        self.crop_size = crop_size or store.grid
        if self.crop_size[0] > store.grid[0] or self.crop_size[1] > store.grid[1]:
            raise UsageError(f"crop {self.crop_size} larger than the stored {store.grid}")
        self.crop = crop
        self.crop_step = max(int(crop_step), 1)
        self.prefetch = prefetch

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (same order as freqdata's loader for the same seed)."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def read_batch(self, req: BatchRequest) -> dict[str, torch.Tensor]:
        """One batch for a :class:`~freqdata.loader.BatchRequest` (rows + crop seed)."""
        rows = np.asarray(req.indices, dtype=np.int64)
        hs, ws = self.store.grid
        full = np.empty((len(rows), 3, hs, ws), np.uint8)
        self.store.read(rows, full)
        h, w = self.crop_size
        if (h, w) == (hs, ws):
            images = full
        else:
            rng = np.random.default_rng(req.seed) if self.crop == "random" else None
            images = np.empty((len(rows), 3, h, w), np.uint8)
            for j in range(len(rows)):
                oy = _crop_offset(rng, hs, h, self.crop_step)
                ox = _crop_offset(rng, ws, w, self.crop_step)
                images[j] = full[j, :, oy : oy + h, ox : ox + w]
        return {
            "images": torch.from_numpy(images),
            "labels": torch.from_numpy(self.store.labels[rows].astype(np.int64)),
            "indices": torch.from_numpy(rows.copy()),
        }

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.prefetch <= 0:
            for req in self.sampler:
                yield self.read_batch(req)
            return
        with ThreadPoolExecutor(1) as ex:
            pending: list[Future] = []
            for req in self.sampler:
                pending.append(ex.submit(self.read_batch, req))
                if len(pending) > self.prefetch:
                    yield pending.pop(0).result()
            for f in pending:
                yield f.result()


def make_rgb_loader(
    store: str | Path | RGBStore,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    crop_size: tuple[int, int] | None = None,
    crop: Literal["center", "random"] = "center",
    crop_step: int = 1,
    prefetch: int = 2,
) -> RGBLoader:
    """Batches of an RGB store in freqdata's sampling order (module docstring).

    ``crop_size=(h, w)`` pixels (None = the stored size); ``crop_step``: random offsets are
    multiples of it (4 at 224 pixels = one 8x8 block at 448, the DCT arm's crop grid);
    ``prefetch``: batches read ahead in one background thread (0 = synchronous).
    """
    s = store if isinstance(store, RGBStore) else RGBStore(store)
    sampler = StoreSampler(
        len(s), batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
        rank=0, world_size=1,
    )  # fmt: skip
    return RGBLoader(s, sampler, crop_size, crop, crop_step, prefetch)


class RGBAugment:
    """RGB batch dict → ``(x, labels)`` on ``device``: uint8 → float32, random horizontal
    flip (``flip_p`` when ``train``; a ``torch.Generator`` on the device seeded with
    ``seed``) and per-channel normalization with the (training) store's pixel statistics.
    ``x`` is ``(B, 3, h, w)`` float32."""

    def __init__(
        self,
        store: RGBStore,
        device: torch.device | str = "cpu",
        *,
        train: bool = True,
        flip_p: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.device = torch.device(device)
        self.flip_p = flip_p if train else 0.0
        self.mean = torch.as_tensor(store.mean, dtype=torch.float32, device=self.device)
        std = torch.as_tensor(store.std, dtype=torch.float32, device=self.device)
        self.inv_std = 1.0 / torch.where(std == 0, torch.ones_like(std), std)
        self.mean, self.inv_std = self.mean[:, None, None], self.inv_std[:, None, None]
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __call__(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["images"].to(self.device, non_blocking=True)
        if self.flip_p > 0:
            flip = torch.rand((x.shape[0],), generator=self.generator, device=self.device)
            x = torch.where((flip < self.flip_p)[:, None, None, None], x.flip(-1), x)
        x = (x.to(torch.float32) - self.mean) * self.inv_std
        return x, batch["labels"].to(self.device, non_blocking=True)
