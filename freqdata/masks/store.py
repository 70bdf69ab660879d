"""Mask stores (Zarr v3): COCO instances → DCT-Mask / PatchDCT vectors and block-wise labels.

:func:`encode_masks` writes one Zarr v3 group (docs/masks.md has the full layout), either
standalone or as the ``masks`` subgroup of an image store of the same images (``into``):

* per instance (M rows, sorted by ``(image_id, ann_id)``): ``vectors`` ``(M, n)`` float32
  (DCT-Mask, :func:`freqdata.masks.dct_encode` of the K x K box mask), ``patch/vectors``
  ``(M, 14, 14, 6)`` float32 and ``patch/labels`` ``(M, 14, 14)`` uint8 (PatchDCT, from a
  112 x 112 mask, :func:`freqdata.masks.patch_encode`), ``image_ids``, ``image_index`` (the
  image store's sample index, -1 when none), ``category_ids``, ``ann_ids`` ``(M,)`` int64,
  ``boxes`` ``(M, 4)`` float64 COCO xywh, ``areas`` ``(M,)`` float64, ``iscrowd`` ``(M,)``
  uint8;
* per image (I rows, every image of the annotation file, sorted by id): ``images/ids``
  ``(I,)`` int64, ``images/file_names`` ``(I,)`` str, ``images/sizes`` ``(I, 2)`` int64
  ``(H, W)``, ``images/image_index`` ``(I,)`` int64;
* block-wise semantic labels (``weak``, optional): ``weak/full`` the category map at image
  resolution and ``weak/nu{N}`` the ``(2N+1) x (2N+1)`` grid for each band limit N, both
  ragged (``data`` flat uint8, ``shape`` ``(I, 2)`` int32, ``offset`` ``(I,)`` int64);
* attributes ``freqdata``: format ``freqdata-masks``, version, config, categories, progress,
  skipped (counts per reason) and the error log.

Category maps (:func:`category_maps`): background 0, COCO categories mapped to 1..K in
ascending category-id order, instances painted largest first so smaller ones stay on top,
crowd regions painted first as ``IGNORE_INDEX`` (255) so any instance over them wins.

Writes are committed in batches of images with ``progress.complete = false``; only the last
step sets it true, so an interrupted encode is never mistaken for a finished one. Same
annotations and options → byte-identical store.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from freqdata.errors import StoreError, UsageError
from freqdata.limits import DEFAULT_MAX_PIXELS
from freqdata.masks.coco import (
    METHODS,
    SKIP_CROWD,
    Annotations,
    bbox_problem,
    full_image_masks,
    image_problem,
    load_coco,
    load_instances,
    polygon_problem,
)
from freqdata.masks.patchdct import patch_encode
from freqdata.masks.rle import rle_problem
from freqdata.masks.weak import IGNORE_INDEX, _cells, blockwise
from freqdata.store import Progress, store_bytes
from freqdata.store.fields import Column, Ragged, append_rows
from freqdata.store.lock import held
from freqdata.store.reader import StoreRecord, read_checked, require_rows
from freqdata.store.writer import fault_point, prepare_new, remove_temporaries

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PATCH_DIMS",
    "PATCH_K",
    "PATCH_SIZE",
    "CategoryMapping",
    "MaskEncodeSummary",
    "MaskStore",
    "category_mapping",
    "category_maps",
    "encode_masks",
    "grid_of",
    "is_mask_store",
    "match_images",
    "open_mask_store",
    "upsample_grid",
    "validate_annotations",
]

FORMAT = "freqdata-masks"
FORMAT_VERSION = 2  # 2: crc32c per chunk, every chunk stored (docs/store.md, "Integrity")
SUBGROUP = "masks"  # name of the group inside an image store (``into``)

PATCH_K, PATCH_SIZE, PATCH_DIMS = 112, 8, 6  # PatchDCT: 112x112 mask, 8x8 patches, 6 dims

DCT_MASK_CONVENTION = (
    "DCT-Mask: K x K box mask, orthonormal 2-D DCT-II (float64), first n coefficients in JPEG "
    "zigzag order extended to K x K, stored float32"
)
PATCH_CONVENTION = (
    "PatchDCT: 112x112 box mask, 14x14 row-major patches of 8x8, 6 zigzag DCT coefficients "
    "(0,0),(0,1),(1,0),(2,0),(1,1),(0,2); labels 0 background / 1 mixed / 2 foreground"
)
WEAK_CONVENTION = (
    "category map: background 0, categories 1..K (ascending COCO id), crowd regions first as "
    "255 (ignore), then instances by decreasing pixel area (smaller on top); nu{N}: majority "
    "label of (2N+1) x (2N+1) cells (freqdata.masks.blockwise), stored as the grid"
)

# Rows per chunk, chosen by measurement (docs/masks.md): about 300 KB raw per chunk. Reading
# the ~7 instances of one random image took 2.7 ms at 256 rows of (300,) float32 against
# 5.3 ms at 1024 rows and 1.8 ms at 64 rows (4x the files); a full scan is as fast.
VECTOR_ROWS = 256
PATCH_ROWS = 64
LABEL_ROWS = 1024
RAGGED_CHUNK = 1 << 20  # uint8 elements per chunk of the ragged label maps
# per-instance arrays (M rows; the patch arrays only with PatchDCT), large ones first
INSTANCE_ARRAYS = ("vectors", "patch/vectors", "patch/labels", "image_ids", "image_index",
                   "category_ids", "ann_ids", "boxes", "areas", "iscrowd")
IMAGE_ARRAYS = ("ids", "file_names", "sizes", "image_index")  # under images/, I rows


# --------------------------------------------------------------------------- categories


@dataclass(frozen=True)
class CategoryMapping:
    """COCO category ids ↔ contiguous labels: ``ids[j]`` has label ``j + 1`` (0 = background)."""

    ids: tuple[int, ...]
    names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Labels in a map: background + categories (``IGNORE_INDEX`` not counted)."""
        return len(self.ids) + 1

    def label(self, category_id: int) -> int:
        """The contiguous label (1..K) of a COCO category id (``KeyError`` if unknown)."""
        return self._index[int(category_id)]

    @cached_property
    def _index(self) -> dict[int, int]:
        return {c: j + 1 for j, c in enumerate(self.ids)}

    def attrs(self) -> list[dict[str, Any]]:
        return [{"id": c, "name": n, "label": j + 1}
                for j, (c, n) in enumerate(zip(self.ids, self.names, strict=True))]


def category_mapping(annotations: Annotations) -> CategoryMapping:
    """The dataset's categories in ascending id order → labels 1..K (at most 254)."""
    dataset = load_coco(annotations)
    cats = sorted((int(c["id"]), str(c.get("name", c["id"])))
                  for c in dataset.get("categories", []))
    if len(cats) >= IGNORE_INDEX:
        raise UsageError(f"{len(cats)} categories do not fit in uint8 labels with ignore 255")
    return CategoryMapping(tuple(c for c, _ in cats), tuple(n for _, n in cats))


# --------------------------------------------------------------------------- validation


def _finite_numbers(x: Any) -> np.ndarray | None:
    """``x`` as a 1-D float64 array of finite numbers, or ``None`` when it is not one."""
    if not isinstance(x, list | tuple):
        return None
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    return a if a.ndim == 1 and bool(np.isfinite(a).all()) else None


def _segmentation_problem(segm: Any, h: int, w: int, max_pixels: int) -> str | None:
    """Why ``segm`` cannot be rasterized at ``h x w`` (None when it can): polygons must be
    lists of finite numbers that pass :func:`freqdata.masks.coco.polygon_problem`, an RLE
    must pass :func:`freqdata.masks.rle.rle_problem`."""
    if isinstance(segm, list):
        parts = [_finite_numbers(p) for p in segm]
        if any(p is None for p in parts):
            return "bad segmentation: polygon parts must be lists of finite numbers"
        valid = [p for p in parts if p is not None and p.size >= 6 and p.size % 2 == 0]
        return polygon_problem(valid, h, w, max_pixels) if valid else None
    if isinstance(segm, dict):
        return rle_problem(segm, h, w)
    return f"bad segmentation: {type(segm).__name__} is neither a polygon list nor an RLE"


def validate_annotations(
    annotations: Annotations,
    image_ids: Iterable[int] | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Screen a COCO dataset for entries that would stop (or crash) an encode.

    The file's structure is checked first (:func:`freqdata.masks.load_coco`, plus a
    ``categories`` list): a file that is not COCO raises
    :class:`~freqdata.errors.UsageError`. Then entry by entry. Returns ``(clean, errors)``:
    ``clean`` is a dataset dict holding the usable images (sorted by id, restricted to
    ``image_ids`` when given), the categories and the annotations that can be rasterized;
    ``errors`` has one entry ``{index, ann_id, image_id, reason}`` per rejected entry
    (``index`` = position in the file's list). An image entry without a usable
    id/height/width, or with ``height * width > max_pixels`` (its masks and category maps
    would be that large), is reported with ``ann_id`` None, and each of its annotations
    with the reason. Checked per annotation: an object with an integer ``id`` (unique), a
    known ``image_id`` and ``category_id``, a ``bbox`` of 4 finite numbers within
    :data:`~freqdata.masks.coco.COORDINATE_RANGE` image sizes, a polygon list of finite
    numbers within that range whose rasterization stays under ``max_pixels``
    (:func:`~freqdata.masks.coco.polygon_problem`), or a decodable RLE of the image's size
    (:func:`~freqdata.masks.rle.rle_problem`). Degenerate boxes, crowd regions and polygons
    with too few points are left to :func:`freqdata.masks.load_instances` (its skip
    reasons), as is the box-grid check of the ``"box"`` rasterization.
    """
    dataset = load_coco(annotations)
    if not isinstance(dataset.get("categories"), list):
        raise UsageError("COCO 'categories' must be a list; it is missing")
    errors: list[dict[str, Any]] = []
    wanted = None if image_ids is None else {int(i) for i in image_ids}
    images: dict[int, dict[str, Any]] = {}
    refused: dict[int, str] = {}  # image id → why its annotations cannot be encoded
    for j, im in enumerate(dataset["images"]):
        try:
            iid, h, w = int(im["id"]), int(im["height"]), int(im["width"])
            if h < 1 or w < 1:
                raise ValueError
        except (KeyError, TypeError, ValueError, OverflowError):
            errors.append({"index": j, "ann_id": None, "image_id": None,
                           "reason": "bad image entry: needs integer id, height, width > 0"})
            continue
        if wanted is not None and iid not in wanted:
            continue
        problem = image_problem(h, w, max_pixels)
        if problem:
            refused[iid] = f"image {iid}: {problem}"
            errors.append({"index": j, "ann_id": None, "image_id": iid, "reason": problem})
            continue
        images[iid] = {**im, "id": iid, "height": h, "width": w}
    categories = {int(c["id"]) for c in dataset["categories"]}
    seen: set[int] = set()
    anns: list[dict[str, Any]] = []
    for j, a in enumerate(dataset["annotations"]):
        ann_id = image_id = None
        reason = None
        if not isinstance(a, dict):
            reason = "annotation is not an object"
        else:
            try:
                ann_id = int(a["id"])
                image_id = int(a["image_id"])
            except (KeyError, TypeError, ValueError, OverflowError):
                reason = "annotation needs integer id and image_id"
        if reason is None and wanted is not None and image_id not in wanted:
            continue
        if reason is None:
            bbox = _finite_numbers(a.get("bbox"))
            if ann_id in seen:
                reason = f"duplicate annotation id {ann_id}"
            elif image_id in refused:
                reason = refused[image_id]
            elif image_id not in images:
                reason = f"unknown image_id {image_id}"
            elif not isinstance(a.get("category_id"), int) or a["category_id"] not in categories:
                reason = f"unknown category_id {a.get('category_id')!r}"
            elif bbox is None or bbox.size != 4:
                reason = f"bad bbox {a.get('bbox')!r:.80}: needs [x, y, w, h] finite numbers"
            else:
                im = images[image_id]  # type: ignore[index]
                h, w = im["height"], im["width"]
                reason = bbox_problem(bbox, h, w) or _segmentation_problem(
                    a.get("segmentation"), h, w, max_pixels)
        if reason is not None:
            errors.append({"index": j, "ann_id": ann_id, "image_id": image_id, "reason": reason})
            continue
        seen.add(ann_id)  # type: ignore[arg-type]
        anns.append(a)
    clean = {
        "images": [images[i] for i in sorted(images)],
        "categories": list(dataset["categories"]),
        "annotations": anns,
    }
    return clean, errors


# --------------------------------------------------------------------------- category maps


def _paint(
    dataset: dict[str, Any],
    anns: Sequence[dict[str, Any]],
    h: int,
    w: int,
    mapping: CategoryMapping,
    crowd: str,
    on_error: Callable[[dict[str, Any], str], None] | None,
) -> np.ndarray:
    out = np.zeros((h, w), dtype=np.uint8)
    crowds = [a for a in anns if a.get("iscrowd", 0)]
    normal = [a for a in anns if not a.get("iscrowd", 0)]
    if crowd == "skip":
        crowds = []
    masks: dict[int, np.ndarray] = {}
    try:
        ids = [int(a["id"]) for a in (*crowds, *normal)]
        masks = dict(zip(ids, full_image_masks(dataset, ids), strict=True))
    except Exception:  # isolate the annotation that fails, keep the others
        for a in (*crowds, *normal):
            try:
                masks[int(a["id"])] = full_image_masks(dataset, [int(a["id"])])[0]
            except Exception as e:
                if on_error is not None:
                    on_error(a, f"{type(e).__name__}: {e}")
    for a in crowds:
        m = masks.get(int(a["id"]))
        if m is not None:
            out[m != 0] = IGNORE_INDEX if crowd == "ignore" else mapping.label(a["category_id"])
    painted = [(int(np.count_nonzero(masks[int(a["id"])])), int(a["id"]), a)
               for a in normal if int(a["id"]) in masks]
    for _, ann_id, a in sorted(painted, key=lambda t: (-t[0], t[1])):
        out[masks[ann_id] != 0] = mapping.label(a["category_id"])
    return out


def category_maps(
    annotations: Annotations,
    image_ids: Iterable[int] | None = None,
    *,
    ann_ids: Iterable[int] | None = None,
    crowd: str = "ignore",
    mapping: CategoryMapping | None = None,
    on_error: Callable[[dict[str, Any], str], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Semantic category maps from instance annotations: yields ``(image_id, (H, W) uint8)``
    for every image (or those in ``image_ids``), in ascending id order.

    Labels: 0 = background, ``mapping.label(category_id)`` (1..K, ascending COCO ids; the
    dataset's :func:`category_mapping` by default) for instance pixels. Overlaps: crowd
    regions are painted first, as ``IGNORE_INDEX`` (``crowd="ignore"``, default), as their
    category (``"category"``) or not at all (``"skip"``); then the other instances in order of
    decreasing pixel area (ties: ascending annotation id), each over what is below, so a
    smaller object on a larger one keeps its label and any instance wins over a crowd
    region. ``ann_ids`` restricts which annotations are painted. Masks are pycocotools
    decodes at image size (:func:`freqdata.masks.full_image_masks`). An annotation that
    cannot be decoded is left out and reported to ``on_error(annotation, reason)``.
    """
    if crowd not in ("ignore", "category", "skip"):
        raise UsageError(f"crowd must be 'ignore', 'category' or 'skip', got {crowd!r}")
    dataset = load_coco(annotations)
    mapping = mapping or category_mapping(dataset)
    keep = None if ann_ids is None else {int(i) for i in ann_ids}
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in dataset.get("annotations", []):
        if keep is None or int(a["id"]) in keep:
            by_image[int(a["image_id"])].append(a)
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in dataset["images"]}
    wanted = sorted(sizes) if image_ids is None else sorted({int(i) for i in image_ids})
    for iid in wanted:
        h, w = sizes[iid]
        anns = sorted(by_image.get(iid, []), key=lambda a: int(a["id"]))
        yield iid, _paint(dataset, anns, h, w, mapping, crowd, on_error)


def _cell_starts(size: int, g: int) -> np.ndarray:
    """First pixel of each of the ``g`` cells along an axis (``blockwise``'s cells)."""
    return np.searchsorted(_cells(size, g), np.arange(g), side="left")


def grid_of(label_map: np.ndarray, nu_max: int) -> np.ndarray:
    """The low-resolution grid ``(gy, gx)`` of :func:`freqdata.masks.blockwise`: one label per
    cell (``gy = grid_size(nu_max, H)``, the same dtype); :func:`upsample_grid` gives
    ``blockwise(label_map, nu_max)`` back exactly."""
    from freqdata.masks.weak import grid_size

    up = blockwise(label_map, nu_max)
    h, w = up.shape
    return up[np.ix_(_cell_starts(h, grid_size(nu_max, h)), _cell_starts(w, grid_size(nu_max, w)))]


def upsample_grid(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest up-sampling of a ``(gy, gx)`` grid to ``(H, W)``: pixel ``(y, x)`` takes cell
    ``(floor(y * gy / H), floor(x * gx / W))`` — :func:`freqdata.masks.blockwise`'s cells."""
    g = np.asarray(grid)
    h, w = int(size[0]), int(size[1])
    return g[np.ix_(_cells(h, g.shape[0]), _cells(w, g.shape[1]))]


# --------------------------------------------------------------------------- encoding


@dataclass
class MaskEncodeSummary:
    """What one :func:`encode_masks` run did."""

    out: str
    images: int = 0
    instances: int = 0
    matched_images: int | None = None  # images found in the image store (``into``)
    skipped: dict[str, int] = field(default_factory=dict)  # policy skips (crowd)
    errors: list[dict[str, Any]] = field(default_factory=list)
    raw_bytes: int = 0
    seconds: float = 0.0
    resumed_from: int = 0  # images already committed when this run started (``resume``)

    @property
    def failed(self) -> int:
        """Annotations that could not be encoded (listed in ``errors``)."""
        return len(self.errors)

    @property
    def store_bytes(self) -> int:
        """Bytes on disk of the mask group."""
        return store_bytes(self.out)


def _digest(annotations: Annotations) -> tuple[str, str]:
    """(file name or "<dict>", sha256 of the file's bytes or of the dict's canonical JSON)."""
    if isinstance(annotations, str | Path):
        return Path(annotations).name, hashlib.sha256(Path(annotations).read_bytes()).hexdigest()
    text = json.dumps(load_coco(annotations), sort_keys=True, separators=(",", ":"))
    return "<dict>", hashlib.sha256(text.encode()).hexdigest()


def _instance_arrays(
    dataset: dict[str, Any], k: int, n: int, method: str, patch: bool, include_crowd: bool
) -> tuple[dict[str, np.ndarray], list[tuple[int, str]]]:
    """Encode every annotation of ``dataset``: per-instance arrays and load_instances' skips."""
    inst = load_instances(dataset, k=k, method=method, include_crowd=include_crowd)
    m = len(inst)
    arrays: dict[str, np.ndarray] = {
        "vectors": inst.dct_vectors(n, dtype=np.float32).reshape(m, n),
        "image_ids": inst.image_ids,
        "category_ids": inst.category_ids,
        "ann_ids": inst.ann_ids,
        "boxes": inst.boxes,
        "areas": inst.areas,
        "iscrowd": inst.iscrowd,
    }
    if patch:
        p = inst if k == PATCH_K else load_instances(dataset, k=PATCH_K, method=method,
                                                     include_crowd=include_crowd)
        if not np.array_equal(p.ann_ids, inst.ann_ids):
            raise RuntimeError("instances differ between the DCT and the PatchDCT grids")
        if m:
            pv, pl = patch_encode(p.masks, PATCH_SIZE, PATCH_DIMS)
        else:
            hp = PATCH_K // PATCH_SIZE
            pv = np.zeros((0, hp, hp, PATCH_DIMS), np.float32)
            pl = np.zeros((0, hp, hp), np.uint8)
        arrays["patch/vectors"], arrays["patch/labels"] = pv, pl
    return arrays, list(inst.skipped)


def _encode_chunk(
    dataset: dict[str, Any], k: int, n: int, method: str, patch: bool, include_crowd: bool,
    errors: list[dict[str, Any]], index_of: dict[int, int],
) -> tuple[dict[str, np.ndarray], list[tuple[int, str]]]:
    """:func:`_instance_arrays` over a chunk; if it raises, annotation by annotation, each
    failure becoming an error entry (the rows are the same as an undisturbed chunk's)."""
    try:
        return _instance_arrays(dataset, k, n, method, patch, include_crowd)
    except Exception:
        pass
    parts: list[dict[str, np.ndarray]] = []
    skipped: list[tuple[int, str]] = []
    for a in sorted(dataset["annotations"], key=lambda a: (int(a["image_id"]), int(a["id"]))):
        one = {**dataset, "annotations": [a]}
        try:
            arrays, sk = _instance_arrays(one, k, n, method, patch, include_crowd)
        except Exception as e:  # one bad annotation never stops the run
            errors.append({"index": index_of.get(int(a["id"])), "ann_id": int(a["id"]),
                           "image_id": int(a["image_id"]), "reason": f"{type(e).__name__}: {e}"})
            continue
        parts.append(arrays)
        skipped += sk
    if not parts:
        empty, _ = _instance_arrays({**dataset, "annotations": []}, k, n, method, patch,
                                    include_crowd)
        return empty, skipped
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}, skipped


def match_images(
    paths: Iterable[Any], file_names: Iterable[Any], ids: Iterable[int]
) -> np.ndarray:
    """For each annotated image (``file_names[j]``, COCO ``ids[j]``): the index of its sample
    in ``paths`` (an image store's source paths), -1 when absent — matched by file name,
    else by the file stem read as the COCO id (zero-padded COCO names); the first sample
    wins. ``(I,)`` int64."""
    by_name: dict[str, int] = {}
    by_id: dict[int, int] = {}
    for i, p in enumerate(paths):
        name = Path(str(p)).name
        by_name.setdefault(name, i)
        stem = Path(name).stem
        if stem.isdigit():
            by_id.setdefault(int(stem), i)
    out = []
    for name, image_id in zip(file_names, ids, strict=True):
        name = Path(str(name or "")).name
        found = by_name.get(name) if name else None
        out.append(found if found is not None else by_id.get(int(image_id), -1))
    return np.asarray(out, dtype=np.int64)


def _image_store_index(into: str | Path, images: list[dict[str, Any]]) -> np.ndarray:
    """Sample index in the image store ``into`` of each image (-1 when absent)."""
    from freqdata.store import open_store

    try:
        s = open_store(into)
    except Exception as e:  # missing path, not a Zarr group, not an image store
        raise UsageError(f"{into} is not a freqdata image store: {e}") from None
    if not s.complete:
        raise UsageError(f"image store {into} is incomplete: finish (resume) it first")
    return match_images(s.paths, [im.get("file_name") for im in images],
                        [im["id"] for im in images])


def _fields(n: int, patch: bool, nus: Sequence[int]) -> tuple[list[Column], list[Column],
                                                                list[Ragged]]:
    """The mask store's fields (:mod:`freqdata.store.fields`): per instance (M rows), per
    image (I rows) and the weak-label maps (I rows, ragged ``(h, w)`` uint8)."""
    inst = [Column("vectors", np.float32, (n,), VECTOR_ROWS, 0.0,
                   dims=("instance", "coefficient"))]
    if patch:
        hp = PATCH_K // PATCH_SIZE
        inst += [
            Column("patch/vectors", np.float32, (hp, hp, PATCH_DIMS), PATCH_ROWS, 0.0,
                   dims=("instance", "patch_y", "patch_x", "coefficient")),
            Column("patch/labels", np.uint8, (hp, hp), LABEL_ROWS, 0,
                   dims=("instance", "patch_y", "patch_x")),
        ]
    inst += [Column(name, np.int64, fill=-1, dims=("instance",))
             for name in ("image_ids", "image_index", "category_ids", "ann_ids")]
    inst += [Column("boxes", np.float64, (4,), fill=0.0, dims=("instance", "xywh")),
             Column("areas", np.float64, fill=0.0, dims=("instance",)),
             Column("iscrowd", np.uint8, fill=0, dims=("instance",))]
    images = [Column("images/ids", np.int64, fill=-1, dims=("image",)),
              Column("images/image_index", np.int64, fill=-1, dims=("image",)),
              Column("images/sizes", np.int64, (2,), fill=0, dims=("image", "hw")),
              Column("images/file_names", str, fill=None)]
    weak = [Ragged(f"weak/{name}", np.uint8, 2, RAGGED_CHUNK)
            for name in (["full", *(f"nu{nu}" for nu in nus)] if nus else [])]
    return inst, images, weak


def _create_arrays(g: zarr.Group, n: int, patch: bool, nus: Sequence[int]) -> None:
    inst, images, weak = _fields(n, patch, nus)
    for f in (*inst, *images, *weak):
        f.create(g)


@dataclass
class _Batch:
    """One batch of images, encoded: what the writer appends, in this order."""

    arrays: dict[str, np.ndarray]  # per-instance arrays (without image_index)
    errors: list[dict[str, Any]]  # failures of this batch, in the order they were found
    skipped: Counter[str]  # policy skips (crowd) by reason
    full: list[np.ndarray]  # category maps, one per image (empty without weak labels)


def _encode_batch(
    sub: dict[str, Any], k: int, n: int, method: str, patch: bool, include_crowd: bool,
    weak: bool, crowd: str, mapping: CategoryMapping, index_of: dict[int, int],
) -> _Batch:
    """Encode the annotations of ``sub`` (a batch of images with their annotations): a pure
    function of its arguments, so it can run anywhere (a Dask worker) and be rerun."""
    errors: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    arrays, sk = _encode_chunk(sub, k, n, method, patch, include_crowd, errors, index_of)
    for ann_id, reason in sk:
        if reason == SKIP_CROWD:
            skipped[reason] += 1
        else:
            a = next(x for x in sub["annotations"] if int(x["id"]) == ann_id)
            errors.append({"index": index_of.get(ann_id), "ann_id": ann_id,
                           "image_id": int(a["image_id"]), "reason": reason})
    full: list[np.ndarray] = []
    if weak:
        stored = set(arrays["ann_ids"].tolist())
        crowds = {int(a["id"]) for a in sub["annotations"] if a.get("iscrowd", 0)}

        def paint_error(a: dict[str, Any], reason: str) -> None:
            errors.append({"index": index_of.get(int(a["id"])), "ann_id": int(a["id"]),
                           "image_id": int(a["image_id"]), "reason": f"category map: {reason}"})

        full = [mp for _, mp in category_maps(sub, ann_ids=stored | crowds, crowd=crowd,
                                              mapping=mapping, on_error=paint_error)]
    return _Batch(arrays, errors, skipped, full)


def _truncate_to(g: zarr.Group, progress: Progress, n: int, patch: bool,
                 nus: Sequence[int]) -> None:
    """Drop rows written after the last commit (an interrupted encode), so that resuming
    appends exactly where the committed store ends."""
    inst, images, weak = _fields(n, patch, nus)
    for f in inst:
        f.truncate(g, progress.samples)
    for f in (*images, *weak):
        f.truncate(g, progress.inputs_done)


def _map_batches(
    fn: Callable[..., _Batch], jobs: Iterator[tuple[Any, ...]], scheduler: Any, retries: int
) -> Iterator[_Batch]:
    """``fn(*job)`` for each job, in order: here, or on a Dask cluster (``scheduler``)."""
    if scheduler is None:
        for job in jobs:
            yield fn(*job)
        return
    from freqdata.distributed import map_ordered

    yield from map_ordered(fn, jobs, scheduler, retries=retries, key="freqdata-masks")


def encode_masks(
    annotations: Annotations,
    out: str | Path | None = None,
    *,
    into: str | Path | None = None,
    k: int = 128,
    n: int = 300,
    method: str = "box",
    patch: bool = True,
    weak: Sequence[int] = (),
    include_crowd: bool = False,
    crowd: str = "ignore",
    overwrite: bool = False,
    resume: bool = False,
    image_ids: Iterable[int] | None = None,
    batch_images: int = 256,
    scheduler: Any = None,
    retries: int = 2,
    on_progress: Callable[[int, int, int], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> MaskEncodeSummary:
    """Encode the instances of a COCO annotation file (or dict) into a mask store.

    Exactly one of ``out`` (a new standalone group) and ``into`` (an image store of the same
    images: the group goes to ``into/masks`` and records each image's sample index) is
    given. ``k``, ``n``, ``method``: the DCT-Mask grid, vector length and rasterization
    (:func:`freqdata.masks.load_instances`); ``patch``: also PatchDCT (112 x 112) vectors and
    labels; ``weak``: band limits nu_max for block-wise labels (empty: none);
    ``include_crowd``: encode crowd regions as instances too; ``crowd``: how crowd regions
    enter the category maps (:func:`category_maps`); ``image_ids``: restrict to these images.
    ``on_progress(images_done, images_total, failed)`` after each batch.

    ``resume``: continue an interrupted store written with the same annotations and options
    (rows after its last commit are dropped, finished batches are not recomputed; a complete
    store is left as it is). ``scheduler``: encode the batches of ``batch_images`` images on
    a Dask cluster (an address, ``local:N`` or a ``distributed.Client``; see
    :func:`freqdata.distributed.connect`); Dask reruns a batch whose worker was lost
    (``retries`` for batches that raise); the client writes the store, in input order, so it
    is byte-identical to the single-process encode.

    Annotations that cannot be encoded (:func:`validate_annotations`, and load_instances'
    "degenerate box", "no valid polygon", "bad segmentation", "out of range", "too large")
    are skipped and listed in the summary's and the store's error log; crowd regions
    skipped by policy are only counted. ``max_pixels``: images with more pixels (``H * W``)
    and polygons whose rasterization needs more points are refused before anything is
    allocated (the same limit and default as ``encode images``; docs/masks.md).
    A file that is not COCO raises :class:`~freqdata.errors.UsageError`.
    Raises ``ValueError`` / ``FileExistsError`` for bad options (nothing written).
    """
    t0 = time.perf_counter()
    if (out is None) == (into is None):
        raise UsageError("give exactly one of out (a new store) and into (an image store)")
    if method not in METHODS:
        raise UsageError(f"method must be one of {METHODS}, got {method!r}")
    if k < 1 or not 1 <= n <= k * k:
        raise UsageError(f"need k >= 1 and 1 <= n <= k*k, got k={k}, n={n}")
    nus = sorted({int(v) for v in weak})
    if any(v < 0 for v in nus):
        raise UsageError(f"nu_max values must be >= 0, got {list(weak)}")
    if crowd not in ("ignore", "category", "skip"):
        raise UsageError(f"crowd must be 'ignore', 'category' or 'skip', got {crowd!r}")
    if resume and overwrite:
        raise UsageError("resume and overwrite exclude each other")
    if batch_images < 1:
        raise UsageError(f"batch_images must be >= 1, got {batch_images}")
    raw = load_coco(annotations)
    mapping = category_mapping(raw)
    clean, errors = validate_annotations(raw, image_ids, max_pixels=max_pixels)
    images = clean["images"]
    image_index = (_image_store_index(into, images) if into is not None
                   else np.full(len(images), -1, dtype=np.int64))
    if into is not None and images and not (image_index >= 0).any():
        raise UsageError(f"none of the {len(images)} annotated images is in the image store "
                         f"{into} (matched by file name and COCO id)")
    path = Path(into) / SUBGROUP if into is not None else Path(str(out))
    if into is not None and path.exists() and not (overwrite or resume):
        raise FileExistsError(f"{into} already has masks: pass overwrite=True (--overwrite)")
    index_of = {int(a["id"]): j for j, a in enumerate(raw.get("annotations", []))
                if isinstance(a, dict) and isinstance(a.get("id"), int)}
    name, sha = _digest(annotations)
    config = {
        "k": k, "n": n, "method": method,
        "patch": {"k": PATCH_K, "patch": PATCH_SIZE, "dims": PATCH_DIMS} if patch else None,
        "weak": nus, "include_crowd": include_crowd, "crowd": crowd, "max_pixels": max_pixels,
        "ignore_index": IGNORE_INDEX,
        "annotations": {"file": name, "sha256": sha, "images": len(images),
                        "annotations": len(raw.get("annotations", []))},
        "image_store": ".." if into is not None else None,
        "dct": DCT_MASK_CONVENTION, "patchdct": PATCH_CONVENTION, "weak_labels": WEAK_CONVENTION,
    }
    from freqdata import __version__

    config["freqdata_version"] = __version__
    with held(path):  # one writer per store (docs/store.md, "Commit protocol")
        skipped: Counter[str] = Counter()
        progress = Progress()

        def record() -> dict[str, Any]:
            """The commit record (one write of the group's ``zarr.json``, docs/store.md)."""
            return {
                "format": FORMAT, "format_version": FORMAT_VERSION, "config": config,
                "categories": mapping.attrs(), "progress": vars(progress).copy(),
                "skipped": dict(sorted(skipped.items())), "errors": errors,
            }

        def commit(complete: bool = False) -> None:
            fault_point("data")
            progress.complete = complete
            g.attrs["freqdata"] = record()
            fault_point("record")

        remove_temporaries(path)
        if resume and (path / "zarr.json").exists():
            g, progress = _reopen(path, config)
            attrs = g.attrs["freqdata"]
            skipped.update(attrs["skipped"])
            errors = errors + attrs["errors"][len(errors):]  # validation errors come first
            _truncate_to(g, progress, n, patch, nus)
        else:  # the first zarr.json holds the record: a kill after it is resumable
            g = prepare_new(path, overwrite or resume, record())
            _create_arrays(g, n, patch, nus)
        resumed_from = progress.inputs_done

        summary = MaskEncodeSummary(str(path), images=len(images), resumed_from=resumed_from)
        if into is not None:
            summary.matched_images = int((image_index >= 0).sum())
        if progress.complete:  # resuming a finished store: nothing to do
            summary.instances, summary.skipped, summary.errors = progress.samples, dict(skipped), []
            return summary
        commit()
        anns_by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for a in clean["annotations"]:
            anns_by_image[int(a["image_id"])].append(a)
        pos = {int(im["id"]): j for j, im in enumerate(images)}
        starts = range(resumed_from, len(images), batch_images)

        def job(s: int) -> tuple[Any, ...]:
            chunk = images[s : s + batch_images]
            sub = {"images": chunk, "categories": clean["categories"],
                   "annotations": [a for im in chunk for a in anns_by_image.get(int(im["id"]), [])]}
            ids = {int(a["id"]): index_of.get(int(a["id"])) for a in sub["annotations"]}
            return (sub, k, n, method, patch, include_crowd, bool(nus), crowd, mapping, ids)

        if on_progress:
            on_progress(resumed_from, len(images), len(errors))
        new_errors = len(errors)
        jobs = (job(s) for s in starts)
        with closing(_map_batches(_encode_batch, jobs, scheduler, retries)) as batches:
            for s, batch in zip(starts, batches, strict=True):
                chunk = images[s : s + batch_images]
                arrays = batch.arrays
                errors.extend(batch.errors)
                skipped.update(batch.skipped)
                rows = [pos[int(i)] for i in arrays["image_ids"]]
                arrays["image_index"] = image_index[rows].astype(np.int64).reshape(-1)
                m = len(arrays["ann_ids"])
                if m:
                    for key, value in arrays.items():
                        append_rows(g[key], value)
                        summary.raw_bytes += value.nbytes
                append_rows(g["images/ids"], np.array([im["id"] for im in chunk], dtype=np.int64))
                append_rows(g["images/image_index"], image_index[s : s + len(chunk)])
                sizes = [[im["height"], im["width"]] for im in chunk]
                append_rows(g["images/sizes"], np.array(sizes, dtype=np.int64))
                names = [str(im.get("file_name", "")) for im in chunk]
                append_rows(g["images/file_names"], np.array(names, dtype=str))
                if nus:
                    full, *grids = _fields(n, patch, nus)[2]
                    full.append(g, batch.full)
                    for field, nu in zip(grids, nus, strict=True):
                        field.append(g, [grid_of(mp, nu) for mp in batch.full])
                progress.inputs_done = s + len(chunk)
                progress.samples += m
                commit()
                if on_progress:
                    on_progress(progress.inputs_done, len(images), len(errors))
        commit(complete=True)
        summary.instances = progress.samples
        summary.skipped = dict(sorted(skipped.items()))
        summary.errors = errors if resumed_from == 0 else errors[new_errors:]
        summary.seconds = time.perf_counter() - t0
        return summary


def _reopen(path: Path, config: dict[str, Any]) -> tuple[zarr.Group, Progress]:
    """The mask group at ``path`` and its committed progress, for a resume with ``config``."""
    try:
        g = zarr.open_group(str(path), mode="r+", zarr_format=3)
        attrs = g.attrs["freqdata"]
    except Exception as e:
        raise UsageError(f"cannot resume {path}: not a freqdata mask store ({e})") from None
    if attrs.get("format") != FORMAT:
        raise UsageError(f"cannot resume {path}: not a freqdata mask store")
    old = {key: v for key, v in attrs["config"].items() if key != "freqdata_version"}
    new = {key: v for key, v in config.items() if key != "freqdata_version"}
    if old != new:
        diff = sorted(key for key in new.keys() | old.keys() if old.get(key) != new.get(key))
        raise UsageError(f"cannot resume {path}: it was written with other annotations or "
                         f"options ({', '.join(diff)} differ); use --overwrite")
    return g, Progress(**attrs["progress"])


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ImageTable:
    """One row per image of the annotation file: COCO ``ids`` ``(I,)`` int64, ``file_names``
    ``(I,)`` str, ``sizes`` ``(I, 2)`` int64 ``(H, W)``, ``image_index`` ``(I,)`` int64 (sample
    index in the image store, -1 when none)."""

    ids: np.ndarray
    file_names: np.ndarray
    sizes: np.ndarray
    image_index: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _mask_group_path(path: str | Path) -> Path | None:
    """The mask group at ``path`` (itself, or an image store's ``masks``), None if none."""
    p = Path(path)
    for cand in (p, p / SUBGROUP):
        meta = cand / "zarr.json"
        if meta.is_file():
            try:
                attrs = json.loads(meta.read_text()).get("attributes", {}).get("freqdata", {})
            except (OSError, ValueError):
                continue
            if isinstance(attrs, dict) and attrs.get("format") == FORMAT:
                return cand
    return None


def is_mask_store(path: str | Path) -> bool:
    """Whether ``path`` is a mask store itself (not an image store holding one)."""
    return _mask_group_path(path) == Path(path)


class MaskStore(StoreRecord):
    """Read access to a mask store: ``len(store)`` instances, arrays by name; the commit
    record's :attr:`complete`, :attr:`config`, :attr:`errors` as every store
    (:class:`~freqdata.store.reader.StoreRecord`).

    Large per-instance arrays are lazy ``zarr.Array`` s (slice them): :attr:`vectors`
    ``(M, n)`` float32, :attr:`patch_vectors` ``(M, 14, 14, 6)`` float32, :attr:`patch_labels`
    ``(M, 14, 14)`` uint8 (opening checks that they hold every committed row; a chunk failing
    its crc32c raises when read). Index arrays are loaded as numpy: :attr:`image_ids`,
    :attr:`image_index`, :attr:`category_ids`, :attr:`ann_ids` ``(M,)`` int64, :attr:`boxes`
    ``(M, 4)`` float64 xywh, :attr:`areas` ``(M,)`` float64, :attr:`iscrowd` ``(M,)`` uint8.
    ``store[i]`` is one instance as a dict; :meth:`rows_of` the rows of one image;
    :attr:`images` the per-image table; :meth:`weak_grid` / :meth:`weak_labels` /
    :meth:`weak_full` the block-wise labels.
    """

    def __init__(self, path: str | Path) -> None:
        found = _mask_group_path(path)
        if found is None:
            raise StoreError(f"{path} is not a freqdata mask store (nor an image store with one)")
        super().__init__(found, FORMAT, "freqdata mask store")
        m = self._n
        g = self.group
        for name in INSTANCE_ARRAYS[:3]:
            if name in g:
                require_rows(g[name], m, unit="instance")
        self.image_ids: np.ndarray = read_checked(g["image_ids"], 0, m, unit="instance")
        self.image_index: np.ndarray = read_checked(g["image_index"], 0, m, unit="instance")
        self.category_ids: np.ndarray = read_checked(g["category_ids"], 0, m, unit="instance")
        self.ann_ids: np.ndarray = read_checked(g["ann_ids"], 0, m, unit="instance")
        self.boxes: np.ndarray = read_checked(g["boxes"], 0, m, unit="instance")
        self.areas: np.ndarray = read_checked(g["areas"], 0, m, unit="instance")
        self.iscrowd: np.ndarray = read_checked(g["iscrowd"], 0, m, unit="instance")
        i = self.progress.inputs_done
        self.images = ImageTable(
            *(read_checked(g[f"images/{name}"], 0, i, unit="image")
              for name in IMAGE_ARRAYS)
        )
        self._image_row = {int(v): j for j, v in enumerate(self.images.ids)}
        self._weak_index: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # -- metadata ----------------------------------------------------------------------------
    @property
    def skipped(self) -> dict[str, int]:
        return self.attrs["skipped"]

    @property
    def categories(self) -> list[dict[str, Any]]:
        """``[{id, name, label}]``: COCO category → contiguous label of the category maps."""
        return self.attrs["categories"]

    @property
    def nus(self) -> list[int]:
        """Band limits with stored block-wise labels."""
        return list(self.config["weak"])

    # -- per-instance arrays -------------------------------------------------------------------
    @property
    def vectors(self) -> zarr.Array:
        return self.group["vectors"]

    @property
    def patch_vectors(self) -> zarr.Array:
        return self.group["patch/vectors"]

    @property
    def patch_labels(self) -> zarr.Array:
        return self.group["patch/labels"]

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -self._n <= i < self._n:
            raise IndexError(f"instance {i} out of range for a store of {self._n}")
        i %= self._n
        def row(arr: zarr.Array) -> np.ndarray:
            return read_checked(arr, i, i + 1, unit="instance")[0]

        out: dict[str, Any] = {
            "vector": row(self.vectors), "image_id": int(self.image_ids[i]),
            "image_index": int(self.image_index[i]), "category_id": int(self.category_ids[i]),
            "ann_id": int(self.ann_ids[i]), "box": self.boxes[i], "area": float(self.areas[i]),
            "iscrowd": int(self.iscrowd[i]),
        }
        if self.config["patch"]:
            out["patch_vectors"] = row(self.patch_vectors)
            out["patch_labels"] = row(self.patch_labels)
        return out

    def rows_of(self, image_id: int) -> np.ndarray:
        """Instance rows ``(m,)`` int64 of one COCO image (rows are sorted by image id)."""
        lo, hi = np.searchsorted(self.image_ids, [image_id, image_id + 1])
        return np.arange(lo, hi, dtype=np.int64)

    # -- block-wise labels ---------------------------------------------------------------------
    def _ragged(self, name: str, row: int) -> np.ndarray:
        if name not in self._weak_index:
            if f"weak/{name}" not in self.group:
                raise KeyError(f"no block-wise labels {name!r} in this store (nus: {self.nus})")
            rg = self.group[f"weak/{name}"]
            i = len(self.images)
            self._weak_index[name] = (read_checked(rg["offset"], 0, i, unit="image"),
                                      read_checked(rg["shape"], 0, i, unit="image"))
        offsets, shapes = self._weak_index[name]
        shape = tuple(int(s) for s in shapes[row])
        start = int(offsets[row])
        flat = read_checked(self.group[f"weak/{name}/data"], start, start + math.prod(shape),
                            affected=f"image row {row}")
        return flat.reshape(shape)

    def image_row(self, image_id: int) -> int:
        """Row of a COCO image id in :attr:`images` (``KeyError`` if absent)."""
        return self._image_row[int(image_id)]

    def weak_full(self, row: int) -> np.ndarray:
        """The full-resolution category map ``(H, W)`` uint8 of image row ``row``."""
        return self._ragged("full", row)

    def weak_grid(self, row: int, nu_max: int) -> np.ndarray:
        """The block-wise label grid ``(2*nu_max+1, 2*nu_max+1)`` uint8 (capped at the image
        size) of image row ``row`` — what a model trained on weak labels is supervised with."""
        return self._ragged(f"nu{nu_max}", row)

    def weak_labels(self, row: int, nu_max: int) -> np.ndarray:
        """The block-wise label up-sampled to the image, ``(H, W)`` uint8: equals
        ``blockwise(weak_full(row), nu_max)``."""
        h, w = (int(v) for v in self.images.sizes[row])
        return upsample_grid(self.weak_grid(row, nu_max), (h, w))


def open_mask_store(path: str | Path) -> MaskStore:
    """Open a mask store — the group itself or an image store holding ``masks`` — for reading."""
    return MaskStore(path)
