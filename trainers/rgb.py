"""RGB stores and their loader: the pixel baseline for the classification trainer.

The stores are written by :func:`freqdata.store.rgb.encode_rgb` (re-exported here with
:func:`~freqdata.store.rgb.ycbcr_to_rgb`, :func:`~freqdata.store.rgb.is_rgb_store` and
:data:`~freqdata.store.rgb.RGB_FORMAT`): the pixel path's own decode, orientation and
geometry, then libjpeg's YCbCr → RGB equations, so the two arms see the same pixels. Layout
(docs/store.md, "RGB stores"): ``images`` ``(N, 3, H, W)`` uint8 plus the index arrays,
statistics (0..255 scale), commit record, lock and resume of every freqdata store.

:func:`make_rgb_loader` yields the same batch dicts as :func:`freqdata.make_loader` (with
``images`` ``(B, 3, h, w)`` uint8 instead of ``cubes``) and uses freqdata's
:class:`~freqdata.loader.StoreSampler`, so with the same ``seed`` and epoch an RGB and a
DCT store of the same inputs are read in the *same order*, batch for batch. Crops are done
on the host (only the crop travels to the device): ``crop="random"`` draws offsets that are
multiples of ``crop_step`` pixels from the batch seed, ``"center"`` takes the centre.
:class:`RGBAugment` then flips (p = 0.5) and normalizes on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from freqdata.errors import UsageError
from freqdata.loader import BatchRequest, StoreSampler
from freqdata.shards import ShardReader
from freqdata.store import StoreGroup
from freqdata.store.reader import read_rows
from freqdata.store.rgb import RGB_FORMAT, encode_rgb, is_rgb_store, ycbcr_to_rgb

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
