"""Semantic-segmentation data: image-store samples paired with label maps of a mask store.

:func:`build_semantic_data` opens an image store (DCT cubes, ``freqdata encode images
--geometry S:C``, for ``input="dct"``; an RGB store, ``freqdata train rgb-store --geometry
S:C``, for ``input="rgb"``) and the mask store of the same images (``freqdata encode masks
ANN OUT --weak ...``, or ``--into STORE``: then it is found as ``STORE/masks``), and returns
a :class:`SemanticSplit` per split:

* **Pairing**: store samples are matched to mask-store images by file name (else by the
  file stem read as the COCO id). Store samples without annotations (e.g. images of the
  folder missing from ``instances_*.json``) are left out: unannotated is not background.
* **Geometry**: the mask store's category map (``weak/full``, at the original image size)
  goes through the same resize-shorter-side + centre-crop as the pixels
  (:func:`label_geometry`: the pixel path's own source box, ``freqdata.pixels._plan``, and
  nearest-neighbour sampling at the output pixel centres), so label ``(i, j)`` lies under
  image pixel ``(i, j)`` of the stored ``C x C`` crop (DCT: under block ``(i//8, j//8)``).
* **Label set** (``classes``): ``"person"`` (default: person vs background), a comma list
  of COCO category names (labels 1..k in the order given), ``"all"`` (every category,
  labels 1..K as in the mask store) or ``"objects"`` (every category merged into one
  foreground class 1, "object"). Other categories become background 0; 255 (crowd
  regions) stays ignore.
* **Block-wise labels** (``nu_max``): :func:`freqdata.masks.blockwise` of the stored
  ``C x C`` map, i.e. ``2*nu_max + 1`` majority cells per side of the stored image (a
  random training crop, ``crop``, then sees a part of that grid). nu_max is in cycles per
  stored image, so the paper's grid for its 513-pixel crops maps to the same cell count on
  our C-pixel images (65 / 33 / 17 cells for nu_max 32 / 16 / 8; cells of about
  4 / 8 / 15 pixels at C = 256, against 8 / 16 / 30 at 513). The mask store's own
  ``weak/nu{N}`` grids cover the whole original image, not the crop, so they are not used.
  Validation always uses the full labels.

Batches: :func:`semantic_loader` reads the split's store rows through
:func:`freqdata.make_loader` (its sampling order: seed and epoch; its batch format) and yields
``{"images" | "cubes", "labels" (B, H, W) uint8, "indices" (B,)}``; :class:`SemanticAugment`
moves a batch to the device, normalizes with the *training* store's statistics and (training)
flips image and labels together with p = 0.5 (DCT: :func:`freqdata.transforms.hflip`, exact for
whole blocks), after an optional joint random crop in whole 8x8 blocks (``crop``): the labels
of a crop are the stored image's labels cut out (the block-wise cells stay those of the whole
stored image, as an annotator would have drawn them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from freqdata.errors import StoreError, UsageError
from freqdata.loader import StoreLoader, make_loader
from freqdata.masks.store import MaskStore, match_images, open_mask_store
from freqdata.masks.weak import IGNORE_INDEX, blockwise
from freqdata.pixels import _plan, parse_geometry
from freqdata.store import ImageStore, open_store
from freqdata.transforms import Normalize, channel_info, random_hflip

from .rgb import RGBStore, is_rgb_store

__all__ = [
    "SemanticAugment",
    "SemanticData",
    "SemanticSplit",
    "build_semantic_data",
    "class_table",
    "label_geometry",
    "semantic_loader",
]


def label_geometry(label_map: np.ndarray, geometry: str) -> np.ndarray:
    """A label map ``(H, W)`` (original image) → the stored image's ``(C, C)`` crop (same
    dtype) for a pixel-path ``geometry`` ``"S:C"``: shorter side resized to S, centre crop C,
    with the source box of :func:`freqdata.pixels.load_ycbcr`; output pixel ``(i, j)`` takes
    the label at the source position of its centre, ``floor(y0 + (i + 0.5) * bh / C)``
    (nearest neighbour; no EXIF rotation: COCO annotations are in the stored pixel frame)."""
    geo = parse_geometry(geometry)
    if geo.crop is None:
        raise UsageError(f"semantic stores need a crop geometry S:C, got {geometry!r}")
    lab = np.asarray(label_map)
    h, w = lab.shape
    (x0, y0, x1, y1), (ow, oh), _ = _plan(geo, w, h, None)
    rows = np.floor(y0 + (np.arange(oh) + 0.5) * (y1 - y0) / oh).astype(np.int64)
    cols = np.floor(x0 + (np.arange(ow) + 0.5) * (x1 - x0) / ow).astype(np.int64)
    return lab[np.ix_(np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1))]


def class_table(categories: list[dict[str, Any]], classes: str) -> tuple[np.ndarray, list[str]]:
    """``(lut (256,) uint8, names)``: mask-store labels → training labels for ``classes``
    (module docstring); ``names[0] == "background"``. Unknown names raise ``ValueError``."""
    by_name = {str(c["name"]): int(c["label"]) for c in categories}
    lut = np.zeros(256, dtype=np.uint8)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    if classes.strip() == "objects":  # every category is one foreground class
        lut[[int(c["label"]) for c in categories]] = 1
        return lut, ["background", "object"]
    if classes.strip() == "all":
        chosen = [str(c["name"]) for c in sorted(categories, key=lambda c: int(c["label"]))]
    else:
        chosen = [s.strip() for s in classes.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in by_name]
        if unknown or not chosen:
            raise UsageError(f"unknown classes {unknown or classes!r}: choose 'all' or names "
                             f"from {', '.join(sorted(by_name))}")  # fmt: skip
    for k, name in enumerate(chosen, start=1):
        lut[by_name[name]] = k
    return lut, ["background", *chosen]


def _mask_rows(paths: np.ndarray, masks: MaskStore) -> tuple[np.ndarray, np.ndarray]:
    """``(store_rows, mask_rows)`` of the store samples that have a mask-store image, in
    store order (:func:`freqdata.masks.store.match_images`)."""
    found = match_images(paths, masks.images.file_names, masks.images.ids)
    mask_rows = np.flatnonzero(found >= 0)
    store_rows = found[mask_rows]
    order = np.argsort(store_rows, kind="stable")
    return store_rows[order], mask_rows[order].astype(np.int64)


@dataclass
class SemanticSplit:
    """One split: ``store`` (ImageStore or RGBStore), ``rows`` ``(N,)`` int64 its sample
    rows, ``image_ids`` ``(N,)`` COCO ids, ``full`` ``(N, H, W)`` uint8 full labels at the
    stored geometry, ``train`` ``(N, H, W)`` uint8 the labels trained on (block-wise at
    ``nu_max``, or ``full`` itself)."""

    store: ImageStore | RGBStore
    rows: np.ndarray
    image_ids: np.ndarray
    full: np.ndarray
    train: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class SemanticData:
    """Both splits and what they share: ``num_classes``, ``class_names``, ``in_channels``,
    ``size`` ``(H, W)`` pixels of the labels, ``geometry``; ``info`` for the log."""

    input: str
    train: SemanticSplit
    val: SemanticSplit | None
    num_classes: int
    class_names: list[str]
    in_channels: int
    size: tuple[int, int]
    geometry: str
    info: dict[str, Any] = field(default_factory=dict)


def _open_images(path: str | Path, input: str) -> ImageStore | RGBStore:
    rgb = is_rgb_store(path)
    if input == "rgb":
        if not rgb:
            raise UsageError(f"--input rgb needs an RGB store (freqdata train rgb-store), "
                             f"{path} is not one")  # fmt: skip
        return RGBStore(path)
    if input != "dct":
        raise UsageError(f"input must be 'dct' or 'rgb', got {input!r}")
    if rgb:
        raise UsageError(f"--input dct needs a DCT store, {path} is an RGB store")
    store = open_store(path)
    if store.parts[0].name != "cubes" or store.parts[0].grid is None:
        raise UsageError(f"{path}: the semantic trainer needs fixed-size full-chroma cubes "
                         "(encode with --geometry S:C --chroma full)")  # fmt: skip
    return store


def _split(
    image_path: str | Path,
    mask_path: str | Path | None,
    input: str,
    classes: str,
    nu_max: int | None,
) -> tuple[SemanticSplit, list[str], str]:
    store = _open_images(image_path, input)
    masks = open_mask_store(mask_path if mask_path is not None else image_path)
    if not masks.nus:
        raise StoreError(f"{masks.path} has no category maps: encode it with --weak (e.g. 8)")
    lut, names = class_table(masks.categories, classes)
    geometry = str(store.config.get("geometry"))
    paths = store.paths
    rows, mrows = _mask_rows(paths, masks)
    if len(rows) == 0:
        raise StoreError(f"no sample of {image_path} has annotations in {masks.path} "
                         "(matched by file name and COCO id)")  # fmt: skip
    full = np.stack([lut[label_geometry(masks.weak_full(int(j)), geometry)] for j in mrows])
    train = full if nu_max is None else np.stack([blockwise(m, nu_max) for m in full])
    return SemanticSplit(store, rows, masks.images.ids[mrows], full, train), names, geometry


def build_semantic_data(
    input: str,
    train_store: str | Path,
    val_store: str | Path | None = None,
    *,
    train_masks: str | Path | None = None,
    val_masks: str | Path | None = None,
    classes: str = "person",
    nu_max: int | None = None,
) -> SemanticData:
    """Open the splits (module docstring). ``*_masks``: mask stores (None: the image store's
    ``masks`` group); ``nu_max``: train on block-wise labels (None: full labels)."""
    if nu_max is not None and nu_max < 0:
        raise UsageError(f"nu_max must be >= 0, got {nu_max}")
    train, names, geometry = _split(train_store, train_masks, input, classes, nu_max)
    val = None
    if val_store is not None:
        val, vnames, vgeo = _split(val_store, val_masks, input, classes, None)
        if vnames != names:
            raise UsageError(f"training classes {names} and validation classes {vnames} differ")
        if vgeo != geometry:
            raise UsageError(f"training geometry {geometry} and validation geometry {vgeo} "
                             "differ")  # fmt: skip
        if val.store.channel_names != train.store.channel_names:
            raise UsageError("the validation store has other channels than the training store")
    size = tuple(int(v) for v in train.full.shape[1:])
    return SemanticData(
        input=input, train=train, val=val, num_classes=len(names), class_names=names,
        in_channels=len(train.store.channel_names), size=size, geometry=geometry,  # type: ignore[arg-type]
        info={
            "store_kind": input, "geometry": geometry, "label_size": list(size),
            "classes": names, "nu_max": nu_max,
            "train_samples": len(train), "train_store_samples": len(train.store),
            "val_samples": len(val) if val is not None else 0,
            "val_store_samples": len(val.store) if val is not None else 0,
        },
    )  # fmt: skip


def semantic_loader(
    split: SemanticSplit,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
    full: bool = False,
) -> StoreLoader:
    """Batches of one split through :func:`freqdata.make_loader` (one rank, freqdata's
    sampling order): ``cubes`` (B, C, Hb, Wb) int16 (DCT) or ``images`` (B, 3, H, W)
    uint8 (RGB), ``labels`` (B, H, W) uint8 (the split's training labels; ``full``: the
    full labels) and ``indices`` (B,) int64 positions in the split."""
    return make_loader(
        split.store, rows=split.rows, labels=split.full if full else split.train,
        batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
        rank=0, world_size=1,
    )  # fmt: skip


class SemanticAugment:
    """Batch → ``(x (B, C, h, w) float32 normalized, labels (B, H, W) int64)`` on ``device``.

    With ``train``: a joint random crop of ``crop`` x ``crop`` pixels (None: none; offsets
    in multiples of 8 pixels, i.e. whole blocks of a DCT input, drawn per sample) and then
    a joint horizontal flip (p = 0.5), both from a ``torch.Generator`` on ``device`` seeded
    with ``seed``. ``stats``: the store whose mean/std normalize (the training store).
    """

    def __init__(
        self,
        stats: ImageStore | RGBStore,
        device: torch.device | str = "cpu",
        *,
        train: bool,
        seed: int = 0,
        crop: int | None = None,
    ) -> None:
        if crop is not None and (crop < 8 or crop % 8):
            raise UsageError(f"crops are whole 8x8 blocks: --crop {crop} is not a multiple of 8")
        self.device = torch.device(device)
        self.train = train
        self.crop = crop
        self.normalize = Normalize.from_store(stats, self.device)
        names = stats.channel_names
        self.dct = not isinstance(stats, RGBStore)
        if self.dct:  # odd horizontal frequencies change sign under a flip
            self.odd_u = channel_info(names).odd_u(self.device)
        else:
            self.odd_u = torch.zeros(len(names), dtype=torch.bool, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def _crop(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c, (h, w) = int(self.crop), y.shape[-2:]  # type: ignore[arg-type]
        if c > h or c > w:
            raise UsageError(f"crop {c} is larger than the stored {h}x{w} pixels")
        b = y.shape[0]
        oy = 8 * torch.randint(0, (h - c) // 8 + 1, (b,), generator=self.generator,
                               device=self.device)  # fmt: skip
        ox = 8 * torch.randint(0, (w - c) // 8 + 1, (b,), generator=self.generator,
                               device=self.device)  # fmt: skip
        s = 8 if self.dct else 1  # pixels per input position
        xs, ys = [], []
        for i, (py, px) in enumerate(zip(oy.tolist(), ox.tolist(), strict=True)):
            xs.append(x[i, :, py // s : (py + c) // s, px // s : (px + c) // s])
            ys.append(y[i, py : py + c, px : px + c])
        return torch.stack(xs), torch.stack(ys)

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["cubes" if "cubes" in batch else "images"].to(self.device, non_blocking=True)
        y = batch["labels"].to(self.device, non_blocking=True).long()
        if self.train:  # crop and flip the stored values, then normalize (a DCT flip
            # negates odd-u coefficients: it must see them before the mean is taken off)
            if self.crop is not None:
                x, y = self._crop(x, y)
            x, flipped = random_hflip(x, self.odd_u, 0.5, self.generator)
            y = torch.where(flipped[:, None, None], y.flip(-1), y)
        return self.normalize(x), y
