"""COCO instance masks (pycocotools) → K x K box-aligned masks, and full-image ground truth.

Two ways to put an instance into its box (``method``):

* ``"box"`` — DCT-Mask / detectron2 ``PolygonMasks.crop_and_resize`` →
  ``rasterize_polygons_within_box``: polygon vertices are shifted by the box corner and
  scaled by ``K / w`` in x and ``K / h`` in y, so the box ``[x0, x0 + w] x [y0, y0 + h]``
  maps onto ``[0, K] x [0, K]``, and rasterized directly at K x K with pycocotools
  (``frPyObjects`` per part, ``merge`` of the parts). This is what DCT-Mask trains on for
  COCO (polygons are never rasterized at image resolution). pycocotools sets a pixel when
  its centre ``(i + 0.5, j + 0.5)`` is inside the polygon, the same continuous-coordinate
  convention as :mod:`freqdata.masks.resample`. RLE annotations (crowd regions) have no
  polygons: they fall back to ``"crop"``.
* ``"crop"`` — the full-image mask (pycocotools ``decode`` of the polygons/RLE at the
  image's H x W, as ``COCO.annToMask``) cropped to the box with ROIAlign
  (``aligned=True``, adaptive sampling ratio; :func:`freqdata.masks.crop_resize`) and
  thresholded at ``>= 0.5``: detectron2's ``BitMasks.crop_and_resize``.

The box is the annotation's COCO ``bbox`` ``[x, y, w, h]`` (float pixels; xyxy =
``[x, y, x + w, y + h]``). What is skipped, with its reason in ``MaskInstances.skipped``:

* ``"crowd"`` — ``iscrowd == 1`` unless ``include_crowd`` (counted in ``crowd_skipped``);
* ``"degenerate box"`` — ``w < 1`` or ``h < 1`` (a box under one pixel has no stable
  K x K resampling);
* ``"no valid polygon"`` — polygon parts with fewer than 3 points (6 numbers) or an odd
  length are dropped, as detectron2's COCO loader does (pycocotools would read a 4-number
  first part as a *bbox*); an instance left with none is skipped;
* ``"bad segmentation"`` — a segmentation that is neither a polygon list nor an RLE dict.

The same polygon filtering is used for :func:`full_image_masks`, so the ground truth and
the box masks describe the same shape.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from freqdata.masks.resample import crop_resize
from freqdata.masks.rle import dct_encode_rle

__all__ = [
    "METHODS",
    "SKIP_BAD_SEGMENTATION",
    "SKIP_CROWD",
    "SKIP_DEGENERATE_BOX",
    "SKIP_NO_POLYGON",
    "MaskInstances",
    "full_image_masks",
    "load_coco",
    "load_instances",
]

SKIP_CROWD = "crowd"
SKIP_DEGENERATE_BOX = "degenerate box"
SKIP_NO_POLYGON = "no valid polygon"
SKIP_BAD_SEGMENTATION = "bad segmentation"

METHODS = ("box", "crop")
_CHUNK = 1024  # instances rasterized per pycocotools batch

Annotations = str | Path | dict[str, Any]


@dataclass
class MaskInstances:
    """COCO instances as box-aligned K x K masks; every array has one row per kept instance.

    Rows are sorted by ``(image_id, ann_id)``.

    * ``image_ids``, ``ann_ids``, ``category_ids``: ``(M,)`` int64 (COCO ids);
    * ``boxes``: ``(M, 4)`` float64 COCO ``bbox`` ``[x, y, w, h]`` in pixels (the box the mask
      is aligned to); :attr:`boxes_xyxy` gives ``[x0, y0, x1, y1]``;
    * ``areas``: ``(M,)`` float64 COCO ``area`` (pixels, as annotated);
    * ``iscrowd``: ``(M,)`` uint8;
    * ``image_sizes``: ``(M, 2)`` int64 ``(H, W)`` of the instance's image;
    * ``rles``: the K x K masks as pycocotools RLEs (``{"size": [k, k], "counts": bytes}``,
      column-major runs), the compact form they are produced in;
    * :attr:`masks`: ``(M, k, k)`` uint8 in {0, 1} (row = y, column = x inside the box),
      decoded from ``rles`` on first access and cached;
    * ``k``, ``method``: the grid size and ``"box"`` / ``"crop"``;
    * ``skipped``: ``(ann_id, reason)`` for every annotation left out (module docstring);
      :attr:`skipped_counts` tallies the reasons, :attr:`crowd_skipped` the crowd ones.

    :meth:`dct_vectors` gives the DCT-Mask vectors straight from the RLEs (the fast path:
    no decoding; the same numbers as ``dct_encode(self.masks, n)``).
    """

    k: int
    method: str
    image_ids: np.ndarray
    ann_ids: np.ndarray
    category_ids: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    iscrowd: np.ndarray
    image_sizes: np.ndarray
    rles: list[dict[str, Any]]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    _masks: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.ann_ids.shape[0])

    @property
    def masks(self) -> np.ndarray:
        """``(M, k, k)`` uint8 {0, 1}, decoded from :attr:`rles` once (C-contiguous)."""
        if self._masks is None:
            if self.rles:
                dec = mask_utils.decode(self.rles)  # (k, k, M), column-major
                self._masks = np.ascontiguousarray(np.moveaxis(dec, -1, 0))
            else:
                self._masks = np.zeros((0, self.k, self.k), dtype=np.uint8)
        return self._masks

    def dct_vectors(self, n: int = 300, *, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """DCT-Mask vectors ``(M, n)`` of the masks, from the RLEs
        (:func:`freqdata.masks.dct_encode_rle`; equal to ``dct_encode(self.masks, n)``)."""
        if not self.rles:
            return np.zeros((0, n), dtype=dtype)
        return dct_encode_rle(self.rles, n, dtype=dtype)

    def select(self, rows: np.ndarray | Sequence[int]) -> MaskInstances:
        """The instances at ``rows`` (indices or a boolean mask); ``skipped`` is kept whole."""
        idx = np.arange(len(self))[np.asarray(rows)]
        return MaskInstances(
            k=self.k,
            method=self.method,
            image_ids=self.image_ids[idx],
            ann_ids=self.ann_ids[idx],
            category_ids=self.category_ids[idx],
            boxes=self.boxes[idx],
            areas=self.areas[idx],
            iscrowd=self.iscrowd[idx],
            image_sizes=self.image_sizes[idx],
            rles=[self.rles[i] for i in idx],
            skipped=list(self.skipped),
            _masks=None if self._masks is None else self._masks[idx],
        )

    @property
    def boxes_xyxy(self) -> np.ndarray:
        """``(M, 4)`` float64 ``[x0, y0, x0 + w, y0 + h]``."""
        b = self.boxes.copy()
        b[:, 2:] += b[:, :2]
        return b

    @property
    def skipped_counts(self) -> dict[str, int]:
        """Number of skipped annotations per reason."""
        return dict(Counter(reason for _, reason in self.skipped))

    @property
    def crowd_skipped(self) -> int:
        """Number of ``iscrowd`` annotations left out (``include_crowd=False``)."""
        return sum(1 for _, reason in self.skipped if reason == SKIP_CROWD)


def load_coco(annotations: Annotations) -> dict[str, Any]:
    """The COCO dataset dict from a path to an ``instances_*.json`` file, or the dict itself
    (a ``pycocotools.coco.COCO`` object's ``.dataset`` works too)."""
    if isinstance(annotations, dict):
        return annotations
    dataset = getattr(annotations, "dataset", None)
    if isinstance(dataset, dict):
        return dataset
    with open(annotations, encoding="utf-8") as f:
        return json.load(f)


def _valid_parts(segm: list[Any]) -> list[np.ndarray]:
    """Polygon parts with at least 3 points and an even number of coordinates (float64)."""
    parts = []
    for p in segm:
        a = np.asarray(p, dtype=np.float64).ravel()
        if a.size >= 6 and a.size % 2 == 0:
            parts.append(a)
    return parts


def _full_rle(segm: Any, h: int, w: int) -> dict[str, Any] | None:
    """One RLE of the instance at image resolution (None when it has no valid polygon)."""
    if isinstance(segm, list):
        parts = _valid_parts(segm)
        if not parts:
            return None
        rles = mask_utils.frPyObjects(parts, h, w)
        return rles[0] if len(rles) == 1 else mask_utils.merge(rles)
    if isinstance(segm, dict) and "counts" in segm:
        if isinstance(segm["counts"], list):  # uncompressed RLE
            return mask_utils.frPyObjects(segm, h, w)
        return segm
    raise ValueError(SKIP_BAD_SEGMENTATION)


def _rasterize_in_boxes(
    parts_per_instance: Sequence[list[np.ndarray]], boxes_xywh: np.ndarray, k: int
) -> list[dict[str, Any]]:
    """detectron2 ``rasterize_polygons_within_box`` for many instances: one k x k RLE each
    (all polygon parts rasterized by one ``frPyObjects`` call, parts merged per instance)."""
    polys: list[np.ndarray] = []
    n_parts: list[int] = []
    for parts, (x, y, w, h) in zip(parts_per_instance, boxes_xywh, strict=True):
        sx, sy = k / max(w, 0.1), k / max(h, 0.1)
        for p in parts:
            q = np.empty_like(p)
            q[0::2] = (p[0::2] - x) * sx
            q[1::2] = (p[1::2] - y) * sy
            polys.append(q)
        n_parts.append(len(parts))
    rles = mask_utils.frPyObjects(polys, k, k)
    merged: list[dict[str, Any]] = []
    start = 0
    for c in n_parts:
        merged.append(rles[start] if c == 1 else mask_utils.merge(rles[start : start + c]))
        start += c
    return merged


def _sorted_annotations(
    dataset: dict[str, Any], image_ids: Iterable[int] | None
) -> list[dict[str, Any]]:
    anns = dataset.get("annotations", [])
    if image_ids is not None:
        wanted = {int(i) for i in image_ids}
        anns = [a for a in anns if int(a["image_id"]) in wanted]
    return sorted(anns, key=lambda a: (int(a["image_id"]), int(a["id"])))


def load_instances(
    annotations: Annotations,
    *,
    k: int = 128,
    method: str = "box",
    include_crowd: bool = False,
    image_ids: Iterable[int] | None = None,
) -> MaskInstances:
    """All instances of a COCO annotation file (or dataset dict) as ``k x k`` box masks.

    ``method``: ``"box"`` (polygons rasterized directly in box coordinates at k x k, as
    DCT-Mask / detectron2 ``rasterize_polygons_within_box``; RLEs via ``"crop"``) or
    ``"crop"`` (full-image mask, ROIAlign crop, ``>= 0.5``); see the module docstring for
    the exact conventions and the skip reasons. ``image_ids`` restricts to those images.
    Deterministic: same file and arguments → identical arrays.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    dataset = load_coco(annotations)
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in dataset["images"]}
    kept: list[dict[str, Any]] = []
    parts: list[list[np.ndarray] | None] = []  # polygon parts, or None for the crop path
    skipped: list[tuple[int, str]] = []
    for a in _sorted_annotations(dataset, image_ids):
        ann_id = int(a["id"])
        if a.get("iscrowd", 0) and not include_crowd:
            skipped.append((ann_id, SKIP_CROWD))
            continue
        _, _, w, h = (float(v) for v in a["bbox"])
        if not (w >= 1.0 and h >= 1.0):
            skipped.append((ann_id, SKIP_DEGENERATE_BOX))
            continue
        segm = a.get("segmentation")
        if isinstance(segm, list):
            valid = _valid_parts(segm)
            if not valid:
                skipped.append((ann_id, SKIP_NO_POLYGON))
                continue
            parts.append(valid if method == "box" else None)
        elif isinstance(segm, dict) and "counts" in segm:
            parts.append(None)
        else:
            skipped.append((ann_id, SKIP_BAD_SEGMENTATION))
            continue
        kept.append(a)

    m = len(kept)
    boxes = np.array([a["bbox"] for a in kept], dtype=np.float64).reshape(m, 4)
    image_ids_arr = np.array([int(a["image_id"]) for a in kept], dtype=np.int64)
    image_sizes = np.array([sizes[int(i)] for i in image_ids_arr], dtype=np.int64).reshape(m, 2)

    rles: list[dict[str, Any]] = [{} for _ in range(m)]
    poly_rows = [i for i in range(m) if parts[i] is not None]
    for s in range(0, len(poly_rows), _CHUNK):
        rows = poly_rows[s : s + _CHUNK]
        polys = [p for p in (parts[i] for i in rows) if p is not None]
        for i, rle in zip(rows, _rasterize_in_boxes(polys, boxes[rows], k), strict=True):
            rles[i] = rle
    crop_rows = [i for i in range(m) if parts[i] is None]
    crop_masks = np.zeros((len(crop_rows), k, k), dtype=np.uint8)
    xyxy = boxes.copy()
    xyxy[:, 2:] += xyxy[:, :2]
    for j, i in enumerate(crop_rows):
        h_img, w_img = (int(v) for v in image_sizes[i])
        full = mask_utils.decode(_full_rle(kept[i]["segmentation"], h_img, w_img))
        crop_masks[j] = crop_resize(full[None], xyxy[i : i + 1], k)[0] >= 0.5
    if crop_rows:
        encoded = mask_utils.encode(np.asfortranarray(np.moveaxis(crop_masks, 0, -1)))
        for i, rle in zip(crop_rows, encoded, strict=True):
            rles[i] = rle

    return MaskInstances(
        k=k,
        method=method,
        image_ids=image_ids_arr,
        ann_ids=np.array([int(a["id"]) for a in kept], dtype=np.int64),
        category_ids=np.array([int(a["category_id"]) for a in kept], dtype=np.int64),
        boxes=boxes,
        areas=np.array([float(a.get("area", 0.0)) for a in kept], dtype=np.float64),
        iscrowd=np.array([int(a.get("iscrowd", 0)) for a in kept], dtype=np.uint8),
        image_sizes=image_sizes,
        rles=rles,
        skipped=skipped,
        # every row went through the crop path: keep the masks already in hand
        _masks=crop_masks if len(crop_rows) == m else None,
    )


def full_image_masks(annotations: Annotations, ann_ids: Iterable[int]) -> list[np.ndarray]:
    """Ground-truth masks at image resolution: one ``(H, W)`` uint8 {0, 1} array per id.

    pycocotools ``decode`` of the annotation's polygons (the valid parts, merged) or RLE at
    its image's size, i.e. ``COCO.annToMask`` with detectron2's polygon filtering. An id
    with no valid polygon gives an all-zero mask; an unknown id raises ``KeyError``.
    """
    dataset = load_coco(annotations)
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in dataset["images"]}
    by_id = {int(a["id"]): a for a in dataset["annotations"]}
    out = []
    for ann_id in ann_ids:
        a = by_id[int(ann_id)]
        h, w = sizes[int(a["image_id"])]
        rle = _full_rle(a["segmentation"], h, w)
        out.append(np.zeros((h, w), np.uint8) if rle is None else mask_utils.decode(rle))
    return out
