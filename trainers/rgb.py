"""RGB stores for the pixel baseline of the classification trainer: reader, loader, augment.

The stores are written by :func:`freqdata.store.rgb.encode_rgb` and read by
:class:`freqdata.store.rgb.RGBStore` (both re-exported here with
:func:`~freqdata.store.rgb.ycbcr_to_rgb`, :func:`~freqdata.store.rgb.is_rgb_store` and
:data:`~freqdata.store.rgb.RGB_FORMAT`): the pixel path's own decode, orientation and
geometry, then libjpeg's YCbCr → RGB equations, so the two arms see the same pixels. Layout
(docs/store.md, "RGB stores"): ``images`` ``(N, 3, H, W)`` uint8 plus the index arrays,
statistics (0..255 scale), commit record, lock and resume of every freqdata store.

:func:`make_rgb_loader` is :func:`freqdata.make_loader` with pixel crops: the same loader,
sampler and batch format (``images`` ``(B, 3, h, w)`` uint8 where a DCT store gives
``cubes``), so with the same ``seed`` and epoch an RGB and a DCT store of the same inputs
are read in the *same order*, batch for batch. Crops are done on the host (only the crop
travels to the device): ``crop="random"`` draws offsets that are multiples of ``crop_step``
pixels from the batch seed, ``"center"`` takes the centre. :class:`RGBAugment` then flips
(p = 0.5) and normalizes on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from freqdata.errors import UsageError
from freqdata.loader import StoreLoader, make_loader
from freqdata.store.rgb import RGB_FORMAT, RGBStore, encode_rgb, is_rgb_store, ycbcr_to_rgb

__all__ = [
    "RGB_FORMAT",
    "RGBAugment",
    "RGBStore",
    "encode_rgb",
    "is_rgb_store",
    "make_rgb_loader",
    "ycbcr_to_rgb",
]


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
) -> StoreLoader:
    """:func:`freqdata.make_loader` over an RGB store, one rank, in freqdata's sampling order.

    ``crop_size=(h, w)`` pixels (None = the stored size; larger than stored raises
    :class:`~freqdata.errors.UsageError`); ``crop_step``: random offsets are multiples of
    it (4 at 224 pixels = one 8x8 block at 448, the DCT arm's crop grid); ``prefetch``:
    batches read ahead by one background thread (0 = synchronous).
    """
    s = store if isinstance(store, RGBStore) else RGBStore(store)
    if crop_size is not None and (crop_size[0] > s.grid[0] or crop_size[1] > s.grid[1]):
        raise UsageError(f"crop {tuple(crop_size)} larger than the stored {s.grid}")
    return make_loader(
        s, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
        rank=0, world_size=1, crop_blocks=crop_size, crop=crop, crop_step=crop_step,
        threads=1 if prefetch > 0 else 0, prefetch_factor=prefetch or None,
    )  # fmt: skip


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
