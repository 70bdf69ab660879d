"""Input pipelines of the classification trainer: one interface for DCT and RGB stores.

:func:`build_pipeline` opens a training store (and optionally a validation store) and
returns a :class:`Pipeline`: loaders that yield batch dicts, the device-side augmentation
that turns a batch into ``(x (B, C, h, w) float32 normalized, labels (B,) int64)``, and the
bytes per sample that travel to the device.

The two arms get the *same* data policy:

* same sample order: both read through freqdata's :class:`~freqdata.loader.StoreSampler`
  (``order="random"``, seeded by ``seed`` and the epoch); training drops the last
  incomplete batch;
* same crops: a random crop on the host, before the transfer (only the crop travels),
  whose offsets come from the same per-batch seed — DCT: ``crop_blocks`` in whole 8x8
  blocks (:func:`freqdata.make_loader`); RGB: offsets in multiples of ``crop_step`` pixels
  (default: the source-to-stored scale that makes one step one block of the DCT arm, e.g.
  4 pixels at 224 for 8-pixel blocks at 448), so a 448-from-480 DCT crop and a 224-from-240
  RGB crop draw the *same* windows of the image; evaluation takes the centre;
* same flips: p = 0.5 on the device from a ``torch.Generator`` seeded with ``seed`` (the
  DCT flip is :func:`freqdata.transforms.hflip`: mirrored block columns, odd ``u`` negated);
* normalization with the *training* store's per-channel statistics (also for validation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from freqdata.errors import UsageError
from freqdata.loader import make_loader
from freqdata.store import ImageStore, open_store
from freqdata.transforms import DeviceAugment
from freqdata.transport import Int8Transport, transport_bytes

from .rgb import RGBAugment, RGBStore, is_rgb_store, make_rgb_loader

__all__ = ["Pipeline", "build_pipeline"]

Batch = dict[str, Any]


@dataclass
class Pipeline:
    """Loaders and device transforms of one run.

    ``train`` / ``val``: iterables of batch dicts with ``set_epoch(e)`` and ``len()``;
    ``augment_train`` / ``augment_val``: batch → ``(x, labels)`` on the device;
    ``in_channels``: C of ``x``; ``spatial``: ``(h, w)`` of ``x`` (blocks or pixels);
    ``bytes_per_sample``: bytes of the input tensor moved to the device per sample;
    ``channel_names``: the store's channel names; ``info``: what was built (for the log).
    """

    input: str
    train: Any
    val: Any | None
    augment_train: Callable[[Batch], tuple[torch.Tensor, torch.Tensor]]
    augment_val: Callable[[Batch], tuple[torch.Tensor, torch.Tensor]]
    in_channels: int
    spatial: tuple[int, int]
    num_classes: int
    class_names: list[str]
    channel_names: list[str]
    bytes_per_sample: int
    info: dict[str, Any] = field(default_factory=dict)


def _dct_grid(store: ImageStore) -> tuple[int, int] | None:
    p = store.parts[0]
    return tuple(p.grid) if p.grid is not None else None  # type: ignore[return-value]


def build_pipeline(
    input: str,
    train_store: str | Path,
    val_store: str | Path | None = None,
    *,
    batch_size: int = 32,
    val_batch_size: int | None = None,
    seed: int = 0,
    crop: int | None = None,
    transport: str = "int16",
    device: torch.device | str = "cpu",
    threads: int = 1,
    crop_step: int | None = None,
) -> Pipeline:
    """Build the loaders and device transforms for ``input`` ``"dct"`` or ``"rgb"``.

    ``crop``: crop side in *pixels of the stored image* (a multiple of 8 for DCT: ``crop /
    8`` blocks); None keeps the stored size (stores of whole images need it). ``transport``
    (DCT only): ``"int16"`` (the stored coefficients) or ``"int8"``
    (:class:`freqdata.transport.Int8Transport` with the training store's statistics).
    ``threads``: loader threads (DCT) / read-ahead thread (RGB; 0 = synchronous).
    """
    vbs = val_batch_size or batch_size
    rgb = is_rgb_store(train_store)
    if input == "rgb" and not rgb:
        raise UsageError(
            f"--input rgb needs an RGB store (freqdata train rgb-store), {train_store} is not one"
        )
    if input == "dct" and rgb:
        raise UsageError(f"--input dct needs a DCT store, {train_store} is an RGB store")
    if val_store is not None and is_rgb_store(val_store) != rgb:
        raise UsageError("the training and validation stores must be of the same kind")
    if input == "rgb":
        return _rgb(train_store, val_store, batch_size, vbs, seed, crop, device, threads,
                    crop_step, transport)  # fmt: skip
    if input != "dct":
        raise UsageError(f"input must be 'dct' or 'rgb', got {input!r}")
    return _dct(train_store, val_store, batch_size, vbs, seed, crop, transport, device, threads)


def _dct(
    train_path: str | Path,
    val_path: str | Path | None,
    batch_size: int,
    val_batch_size: int,
    seed: int,
    crop: int | None,
    transport: str,
    device: torch.device | str,
    threads: int,
) -> Pipeline:
    train = open_store(train_path)
    if train.parts[0].name != "cubes":
        raise UsageError("native-chroma stores are not supported by the trainer: encode "
                         "with --chroma full")  # fmt: skip
    grid = _dct_grid(train)
    if crop is not None:
        if crop % 8:
            raise UsageError(f"DCT crops are whole 8x8 blocks: --crop {crop} is not a multiple "
                             "of 8")  # fmt: skip
        blocks: tuple[int, int] | None = (crop // 8, crop // 8)
    else:
        blocks = grid
    if blocks is None:
        raise UsageError(f"{train_path} holds whole images (ragged): give --crop")
    if transport not in ("int16", "int8"):
        raise UsageError(f"transport must be int16 or int8, got {transport!r}")
    tr = Int8Transport.from_store(train) if transport == "int8" else None
    c = len(train.channel_names)
    kw = dict(crop_blocks=blocks, transport=tr, threads=threads, num_workers=0)
    train_loader = make_loader(train, batch_size=batch_size, shuffle=True, seed=seed,
                               drop_last=True, crop="random", **kw)  # fmt: skip
    val_loader = None
    if val_path is not None:
        val = open_store(val_path)
        if val.channel_names != train.channel_names:
            raise UsageError("the validation store has other channels than the training store")
        val_loader = make_loader(val, batch_size=val_batch_size, shuffle=False, seed=seed,
                                 crop="center", **kw)  # fmt: skip
    aug_train = DeviceAugment(train, device, train=True, seed=seed, transport=tr)
    aug_val = DeviceAugment(train, device, train=False, seed=seed, transport=tr)
    return Pipeline(
        input="dct",
        train=train_loader,
        val=val_loader,
        augment_train=aug_train,
        augment_val=aug_val,
        in_channels=c,
        spatial=blocks,
        num_classes=max(len(train.class_names), int(train.labels.max(initial=0)) + 1),
        class_names=list(train.class_names),
        channel_names=list(train.channel_names),
        bytes_per_sample=transport_bytes(transport, (c, *blocks)),
        info={
            "store_kind": "dct",
            "preset": train.config.get("preset"),
            "geometry": train.config.get("geometry"),
            "stored_grid": list(grid) if grid else None,
            "crop_blocks": list(blocks),
            "transport": transport,
            "train_samples": len(train),
            "val_samples": len(val_loader.store_dataset) if val_loader is not None else 0,
        },
    )


def _rgb(
    train_path: str | Path,
    val_path: str | Path | None,
    batch_size: int,
    val_batch_size: int,
    seed: int,
    crop: int | None,
    device: torch.device | str,
    threads: int,
    crop_step: int | None,
    transport: str,
) -> Pipeline:
    if transport != "int16":
        raise UsageError("--transport applies to DCT stores (RGB travels as uint8)")
    train = RGBStore(train_path)
    size = (crop, crop) if crop is not None else train.grid
    if crop_step is None:  # one step = one 8x8 block of a DCT crop with twice the resolution
        crop_step = 4
    kw = dict(crop_size=size, crop_step=crop_step, prefetch=2 if threads > 0 else 0)
    train_loader = make_rgb_loader(train, batch_size=batch_size, shuffle=True, seed=seed,
                                   drop_last=True, crop="random", **kw)  # fmt: skip
    val_loader = None
    if val_path is not None:
        val = RGBStore(val_path)
        val_loader = make_rgb_loader(val, batch_size=val_batch_size, shuffle=False, seed=seed,
                                     crop="center", **kw)  # fmt: skip
    return Pipeline(
        input="rgb",
        train=train_loader,
        val=val_loader,
        augment_train=RGBAugment(train, device, train=True, seed=seed),
        augment_val=RGBAugment(train, device, train=False, seed=seed),
        in_channels=3,
        spatial=size,
        num_classes=max(len(train.class_names), int(train.labels.max(initial=0)) + 1),
        class_names=list(train.class_names),
        channel_names=list(train.channel_names),
        bytes_per_sample=3 * size[0] * size[1],
        info={
            "store_kind": "rgb",
            "geometry": train.config.get("geometry"),
            "stored_grid": list(train.grid),
            "crop_pixels": list(size),
            "crop_step": crop_step,
            "transport": "uint8",
            "train_samples": len(train),
            "val_samples": len(val_loader.store) if val_loader is not None else 0,
        },
    )


def iterate(loader: Iterable[Batch], limit: int | None = None) -> Iterable[Batch]:
    """``loader``'s batches, at most ``limit`` of them."""
    for i, b in enumerate(loader):
        if limit is not None and i >= limit:
            break
        yield b
