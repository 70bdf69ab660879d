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

With ``augment="standard"`` or ``"randaugment"`` (issue 16) the crop is torchvision's
``RandomResizedCrop`` + horizontal flip instead, done on the device after the transfer (the
whole stored image travels): DCT — :class:`freqdata.augment.TrainAugment` (the resized crop
in the DCT domain); RGB — :class:`RGBTrainAugment` (the same box sampler, the same
``"triangle"`` kernel on the pixels, :func:`freqdata.augment.pixels.resized_crop_pixels`).
Boxes come from a CPU generator seeded with ``seed`` and flips from the device generator
seeded with ``seed``, the same draws on both arms; ``box_step`` puts one arm's boxes on a
coarser lattice so that a DCT store at ``box_step`` times the RGB store's resolution gets
*the same boxes* (scaled) as the RGB arm. ``randaugment`` adds RandAugment (2 ops, magnitude
9) — on DCT inputs only (the RGB arm has no pixel RandAugment here; UsageError). Evaluation
resizes the centre box of ``eval_crop`` of the shorter side to the output size: 0.875
(torchvision's ``Resize`` + ``CenterCrop``) for stores of whole squares (``S:S``), 1.0 for
stores already centre-cropped (``S:C`` with ``C < S``, e.g. ``resnet``).

A DCT run may also read *images* instead of a store (``train_store`` a folder of class
sub-folders or a list file): :mod:`freqdata.augment.onthefly` decodes and encodes them in
``threads`` worker processes with ``preset`` at ``geometry`` — with ``augment="standard"``
the pixel path's RandomResizedCrop + flip before the DCT (DCTNet's training transform, the
reference the store path is compared with), with ``"none"`` the deterministic resize + centre
crop; no further crop or flip on the device, normalization with DCTNet's statistics table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from freqdata.augment import TrainAugment
from freqdata.augment.onthefly import JpegDataset, make_jpeg_loader
from freqdata.augment.pipeline import RECIPES, centre_boxes
from freqdata.augment.pixels import resized_crop_pixels
from freqdata.augment.sampling import draw_boxes
from freqdata.errors import UsageError
from freqdata.loader import make_loader
from freqdata.pixels import parse_geometry
from freqdata.presets import resolve_preset
from freqdata.store import ImageStore, open_store
from freqdata.transforms import DeviceAugment
from freqdata.transport import Int8Transport, transport_bytes

from .rgb import RGBAugment, RGBStore, is_rgb_store, make_rgb_loader

__all__ = ["Pipeline", "RGBTrainAugment", "build_pipeline", "eval_crop_for", "is_store"]

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


@dataclass(frozen=True)
class _Request:
    """What :func:`build_pipeline` was asked for (its arguments, ``val_batch_size`` resolved)."""

    train: str | Path
    val: str | Path | None
    batch_size: int
    val_batch_size: int
    seed: int
    crop: int | None
    transport: str
    device: torch.device | str
    threads: int
    crop_step: int | None
    augment: str
    box_step: int
    preset: str
    geometry: str
    keep_preset: str | None


def _classes(store: Any) -> dict[str, Any]:
    """:class:`Pipeline`'s ``num_classes`` (at least the largest label + 1) and
    ``class_names`` for a training ``store``."""
    n = max(len(store.class_names), int(store.labels.max(initial=0)) + 1)
    return {"num_classes": n, "class_names": list(store.class_names)}


def _int8(train: ImageStore, transport: str) -> Int8Transport | None:
    """The transport of a DCT run: None for ``"int16"``, the training store's int8 mapping."""
    if transport not in ("int16", "int8"):
        raise UsageError(f"transport must be int16 or int8, got {transport!r}")
    return Int8Transport.from_store(train) if transport == "int8" else None


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
    augment: str = "none",
    box_step: int = 1,
    preset: str = "dctnet-24",
    geometry: str = "resnet",
    keep_preset: str | None = None,
) -> Pipeline:
    """Build the loaders and device transforms for ``input`` ``"dct"`` or ``"rgb"``.

    ``crop``: crop side in *pixels of the stored image* (a multiple of 8 for DCT: ``crop /
    8`` blocks); None keeps the stored size (stores of whole images need it). ``transport``
    (DCT only): ``"int16"`` (the stored coefficients) or ``"int8"``
    (:class:`freqdata.transport.Int8Transport` with the training store's statistics).
    ``threads``: loader threads (DCT) / read-ahead thread (RGB; 0 = synchronous).
    ``augment``: ``"none"`` (host crops + flip, module docstring), ``"standard"`` or
    ``"randaugment"`` (device RandomResizedCrop + flip to ``crop``, on a store with a fixed
    grid); ``box_step``: the boxes' pixel lattice (module docstring). ``preset`` /
    ``geometry``: the encoding of an image folder read on the fly (module docstring).
    ``keep_preset`` (DCT with ``augment``): the model reads this preset's channels, cropped
    from a store that holds more (docs/loader.md, "Stores for training").
    """
    if keep_preset is not None and (augment == "none" or input != "dct"):
        raise UsageError("--keep-preset needs --input dct and --augment standard|randaugment")
    if augment not in RECIPES:
        raise UsageError(f"unknown augment {augment!r}: choose one of {', '.join(RECIPES)}")
    r = _Request(train_store, val_store, batch_size, val_batch_size or batch_size, seed, crop,
                 transport, device, threads, crop_step, augment, box_step, preset, geometry,
                 keep_preset)  # fmt: skip
    if not is_store(train_store):
        if input != "dct":
            raise UsageError(f"{train_store} is not a store: images are read on the fly for "
                             "--input dct only")  # fmt: skip
        return _onthefly(r)
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
        if augment != "none":
            return _rgb_augmented(r)
        return _rgb(r)
    if input != "dct":
        raise UsageError(f"input must be 'dct' or 'rgb', got {input!r}")
    if augment != "none":
        return _dct_augmented(r)
    return _dct(r)


def _dct(r: _Request) -> Pipeline:
    train = _open_dct(r.train)
    grid = _dct_grid(train)
    if r.crop is not None:
        if r.crop % 8:
            raise UsageError(f"DCT crops are whole 8x8 blocks: --crop {r.crop} is not a multiple "
                             "of 8")  # fmt: skip
        blocks: tuple[int, int] | None = (r.crop // 8, r.crop // 8)
    else:
        blocks = grid
    if blocks is None:
        raise UsageError(f"{r.train} holds whole images (ragged): give --crop")
    tr = _int8(train, r.transport)
    c = len(train.channel_names)
    kw = dict(crop_blocks=blocks, transport=tr, threads=r.threads, num_workers=0)
    train_loader = make_loader(train, batch_size=r.batch_size, shuffle=True, seed=r.seed,
                               drop_last=True, crop="random", **kw)  # fmt: skip
    val_loader = None
    if r.val is not None:
        val = open_store(r.val)
        if val.channel_names != train.channel_names:
            raise UsageError("the validation store has other channels than the training store")
        val_loader = make_loader(val, batch_size=r.val_batch_size, shuffle=False, seed=r.seed,
                                 crop="center", **kw)  # fmt: skip
    aug_train = DeviceAugment(train, r.device, train=True, seed=r.seed, transport=tr)
    aug_val = DeviceAugment(train, r.device, train=False, seed=r.seed, transport=tr)
    return Pipeline(
        input="dct",
        train=train_loader,
        val=val_loader,
        augment_train=aug_train,
        augment_val=aug_val,
        in_channels=c,
        spatial=blocks,
        **_classes(train),
        channel_names=list(train.channel_names),
        bytes_per_sample=transport_bytes(r.transport, (c, *blocks)),
        info={
            "store_kind": "dct",
            "preset": train.config.get("preset"),
            "geometry": train.config.get("geometry"),
            "stored_grid": list(grid) if grid else None,
            "crop_blocks": list(blocks),
            "transport": r.transport,
            "train_samples": len(train),
            "val_samples": len(val_loader.store_dataset) if val_loader is not None else 0,
        },
    )


def is_store(path: str | Path) -> bool:
    """True when ``path`` is a zarr store (has ``zarr.json``), False for an image folder or
    a list file."""
    return (Path(path) / "zarr.json").is_file()


def _onthefly(r: _Request) -> Pipeline:
    if r.augment not in ("none", "standard"):
        raise UsageError(f"images read on the fly support --augment none or standard (on the "
                         f"pixels), not {r.augment}")  # fmt: skip
    if r.transport != "int16":
        raise UsageError("--transport int8 needs a store's statistics: images on the fly "
                         "travel as int16")  # fmt: skip
    train = JpegDataset(r.train, r.preset, r.geometry, train=r.augment == "standard")
    size = train.grid
    if r.crop is not None and (r.crop // 8, r.crop // 8) != size:
        raise UsageError(f"--crop {r.crop} differs from the geometry's crop {r.geometry}: give "
                         "the output size with --geometry S:C")  # fmt: skip
    train_loader = make_jpeg_loader(train, batch_size=r.batch_size, shuffle=True, seed=r.seed,
                                    drop_last=True, num_workers=r.threads)  # fmt: skip
    val_loader: Any = None
    if r.val is not None:
        if is_store(r.val):
            val_loader = make_loader(r.val, batch_size=r.val_batch_size, shuffle=False,
                                     seed=r.seed, threads=0, num_workers=0)  # fmt: skip
            val_store = val_loader.store_dataset.store
            if list(val_store.channel_names) != train.channel_names:
                raise UsageError("the validation store has other channels than the preset")
            if _dct_grid(val_store) != size:
                raise UsageError(f"the validation store's grid is not the geometry's {size}")
        else:
            val = JpegDataset(r.val, r.preset, r.geometry, train=False)
            val_loader = make_jpeg_loader(val, batch_size=r.val_batch_size, shuffle=False,
                                          seed=r.seed, num_workers=r.threads)  # fmt: skip
    plain = DeviceAugment(train, r.device, train=False, seed=r.seed)  # normalization only
    val_samples = 0
    if val_loader is not None:
        val_samples = len(val_loader.store_dataset)
    c = len(train.channel_names)
    return Pipeline(
        input="dct",
        train=train_loader,
        val=val_loader,
        augment_train=plain,
        augment_val=plain,
        in_channels=c,
        spatial=size,  # type: ignore[arg-type]
        **_classes(train),
        channel_names=list(train.channel_names),
        bytes_per_sample=transport_bytes("int16", (c, *size)),  # type: ignore[misc]
        info={
            "store_kind": "images on the fly",
            "preset": r.preset,
            "geometry": train.geometry.name,
            "augment": f"{r.augment} (pixels, CPU workers)",
            "statistics": "dctnet",
            "transport": "int16",
            "train_samples": len(train),
            "val_samples": val_samples,
        },
    )


def eval_crop_for(config: dict[str, Any]) -> float:
    """Evaluation's centre fraction for a store's ``config``: 1.0 when its geometry already
    centre-cropped (``S:C``, ``C < S``), else 0.875 (module docstring)."""
    geo = parse_geometry(config.get("geometry") or "none")
    cropped = geo.crop is not None and geo.resize is not None and geo.crop < geo.resize
    return 1.0 if cropped else 0.875


def _open_dct(path: str | Path) -> ImageStore:
    store = open_store(path)
    if store.parts[0].name != "cubes":
        raise UsageError("native-chroma stores are not supported by the trainer: encode "
                         "with --chroma full")  # fmt: skip
    return store


def _dct_augmented(r: _Request) -> Pipeline:
    train = _open_dct(r.train)
    grid = _dct_grid(train)
    if grid is None:
        raise UsageError(f"--augment needs a store with a fixed grid (an S:C geometry, e.g. "
                         f"512:512); {r.train} holds whole images")  # fmt: skip
    if r.crop is not None and r.crop % 8:
        raise UsageError(f"DCT outputs are whole 8x8 blocks: --crop {r.crop} is not a "
                         "multiple of 8")  # fmt: skip
    size = (r.crop // 8, r.crop // 8) if r.crop is not None else grid
    tr = _int8(train, r.transport)
    c = len(train.channel_names)
    kw = dict(transport=tr, threads=r.threads, num_workers=0)
    train_loader = make_loader(train, batch_size=r.batch_size, shuffle=True, seed=r.seed,
                               drop_last=True, **kw)  # fmt: skip
    val_loader, val_crop = None, 0.875
    if r.val is not None:
        val = _open_dct(r.val)
        if val.channel_names != train.channel_names:
            raise UsageError("the validation store has other channels than the training store")
        if _dct_grid(val) is None:
            raise UsageError(f"--augment needs a validation store with a fixed grid: {r.val}")
        val_crop = eval_crop_for(val.config)
        val_loader = make_loader(val, batch_size=r.val_batch_size, shuffle=False, seed=r.seed, **kw)
    keep = None
    if r.keep_preset is not None:
        p = resolve_preset(r.keep_preset)
        keep = [f"Y{k}" for k in p.y] + [f"Cb{k}" for k in p.cb] + [f"Cr{k}" for k in p.cr]
    common = dict(size=size, recipe=r.augment, seed=r.seed, transport=tr, keep=keep)
    aug_train = TrainAugment(train, r.device, train=True, box_step=r.box_step, **common)
    aug_val = TrainAugment(train, r.device, train=False, eval_crop=val_crop, **common)
    return Pipeline(
        input="dct",
        train=train_loader,
        val=val_loader,
        augment_train=aug_train,
        augment_val=aug_val,
        in_channels=len(keep) if keep is not None else c,
        spatial=size,
        **_classes(train),
        channel_names=keep if keep is not None else list(train.channel_names),
        bytes_per_sample=transport_bytes(r.transport, (c, *grid)),
        info={
            "store_kind": "dct",
            "preset": train.config.get("preset"),
            "geometry": train.config.get("geometry"),
            "stored_grid": list(grid),
            "augment": r.augment,
            "output_blocks": list(size),
            "box_step": r.box_step,
            "keep_preset": r.keep_preset,
            "eval_crop": val_crop,
            "transport": r.transport,
            "train_samples": len(train),
            "val_samples": len(val_loader.store_dataset) if val_loader is not None else 0,
        },
    )


class RGBTrainAugment(RGBAugment):
    """RGB batch dict → ``(x (B, 3, *size) float32 normalized, labels)`` on ``device``: the
    RGB arm of ``augment="standard"`` — torchvision's RandomResizedCrop (boxes by
    :func:`freqdata.augment.sampling.draw_boxes` from a CPU generator seeded with ``seed``,
    ``box_step`` lattice) resampled with ``kernel`` by
    :func:`~freqdata.augment.pixels.resized_crop_pixels`, then the flip of
    :class:`~freqdata.trainers.rgb.RGBAugment` (same draws as the DCT arm's) and
    normalization. ``train=False``: the centre box of ``eval_crop`` of the shorter side
    resized to ``size``, no flip."""

    def __init__(
        self,
        store: RGBStore,
        device: torch.device | str = "cpu",
        *,
        size: tuple[int, int],
        train: bool = True,
        eval_crop: float = 0.875,
        seed: int = 0,
        box_step: int = 1,
        kernel: str = "triangle",
    ) -> None:
        super().__init__(store, device, train=train, seed=seed)
        self.train = train
        self.size = (int(size[0]), int(size[1]))
        self.eval_crop, self.kernel, self.box_step = eval_crop, kernel, int(box_step)
        self.box_generator = torch.Generator().manual_seed(seed)

    def boxes(self, n: int, height: int, width: int) -> torch.Tensor:
        """``(n, 4)`` int64 ``(top, left, h, w)`` for a batch of ``height x width`` images."""
        if not self.train:
            sizes = torch.tensor([[height, width]], dtype=torch.int64).expand(n, 2)
            return centre_boxes(sizes, self.eval_crop)
        return draw_boxes(height, width, n, self.box_generator, step=self.box_step)

    def __call__(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["images"].to(self.device, non_blocking=True)
        boxes = self.boxes(x.shape[0], x.shape[-2], x.shape[-1])
        x = resized_crop_pixels(x, boxes, self.size, self.kernel)
        if self.flip_p > 0:
            flip = torch.rand((x.shape[0],), generator=self.generator, device=self.device)
            x = torch.where((flip < self.flip_p)[:, None, None, None], x.flip(-1), x)
        x = (x - self.mean) * self.inv_std
        return x, batch["labels"].to(self.device, non_blocking=True)


def _rgb_augmented(r: _Request) -> Pipeline:
    if r.transport != "int16":
        raise UsageError("--transport applies to DCT stores (RGB travels as uint8)")
    if r.augment != "standard":
        raise UsageError(f"--augment {r.augment} is for DCT inputs; RGB supports none, standard")
    train = RGBStore(r.train)
    size = (r.crop, r.crop) if r.crop is not None else train.grid
    kw = dict(prefetch=2 if r.threads > 0 else 0)
    train_loader = make_rgb_loader(train, batch_size=r.batch_size, shuffle=True, seed=r.seed,
                                   drop_last=True, **kw)  # fmt: skip
    val_loader, val_crop = None, 0.875
    if r.val is not None:
        val = RGBStore(r.val)
        val_crop = eval_crop_for(val.config)
        val_loader = make_rgb_loader(val, batch_size=r.val_batch_size, shuffle=False, seed=r.seed,
                                     **kw)  # fmt: skip
    aug_val = RGBTrainAugment(train, r.device, size=size, train=False, eval_crop=val_crop,
                              seed=r.seed)  # fmt: skip
    return Pipeline(
        input="rgb",
        train=train_loader,
        val=val_loader,
        augment_train=RGBTrainAugment(train, r.device, size=size, seed=r.seed, box_step=r.box_step),
        augment_val=aug_val,
        in_channels=3,
        spatial=size,
        **_classes(train),
        channel_names=list(train.channel_names),
        bytes_per_sample=3 * train.grid[0] * train.grid[1],
        info={
            "store_kind": "rgb",
            "geometry": train.config.get("geometry"),
            "stored_grid": list(train.grid),
            "augment": r.augment,
            "output_pixels": list(size),
            "box_step": r.box_step,
            "eval_crop": val_crop,
            "transport": "uint8",
            "train_samples": len(train),
            "val_samples": len(val_loader.store) if val_loader is not None else 0,
        },
    )


def _rgb(r: _Request) -> Pipeline:
    if r.transport != "int16":
        raise UsageError("--transport applies to DCT stores (RGB travels as uint8)")
    train = RGBStore(r.train)
    size = (r.crop, r.crop) if r.crop is not None else train.grid
    # default: one step = one 8x8 block of a DCT crop with twice the resolution
    crop_step = 4 if r.crop_step is None else r.crop_step
    kw = dict(crop_size=size, crop_step=crop_step, prefetch=2 if r.threads > 0 else 0)
    train_loader = make_rgb_loader(train, batch_size=r.batch_size, shuffle=True, seed=r.seed,
                                   drop_last=True, crop="random", **kw)  # fmt: skip
    val_loader = None
    if r.val is not None:
        val = RGBStore(r.val)
        val_loader = make_rgb_loader(val, batch_size=r.val_batch_size, shuffle=False, seed=r.seed,
                                     crop="center", **kw)  # fmt: skip
    return Pipeline(
        input="rgb",
        train=train_loader,
        val=val_loader,
        augment_train=RGBAugment(train, r.device, train=True, seed=r.seed),
        augment_val=RGBAugment(train, r.device, train=False, seed=r.seed),
        in_channels=3,
        spatial=size,
        **_classes(train),
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
