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
* ``"bad segmentation"`` — a segmentation that is neither a polygon list of numbers nor a
  decodable RLE dict (:func:`freqdata.masks.rle.rle_problem`);
* ``"out of range"`` — a non-finite coordinate, a polygon vertex or box corner further than
  :data:`COORDINATE_RANGE` (4) image sizes from the origin (``|x| <= 4 W``, ``|y| <= 4 H``),
  or (``"box"``) a vertex further than 4 box sizes from the box corner;
* ``"too large"`` — the image has more than ``max_pixels`` pixels (``H * W``, the limit
  of the image encoder), or the polygon's outline needs more than ``max_pixels`` points
  in pycocotools' rasterizer (:func:`outline_points`, on the image grid or the K x K box
  grid).

Why: pycocotools' rasterizer (``rleFrPoly``) has no checks. It converts 5x the coordinates
to C ``int`` (a vertex at 1e8 in a small box overflows: a segmentation fault) and allocates
two ints per point of the outline drawn on a 5x grid (a few huge edges: gigabytes). So
every polygon is measured here before pycocotools sees it, and refused rather than
clipped. Real COCO polygons stay inside their box (measured on coco-mini: no vertex
further than 1e-14 box sizes outside), far from either bound.

The same polygon filtering and checks are used for :func:`full_image_masks`, so the ground
truth and the box masks describe the same shape, and load :func:`load_coco` refuses a file
whose structure is not COCO's (:class:`~freqdata.errors.UsageError`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from freqdata.errors import InputError, UsageError
from freqdata.limits import DEFAULT_MAX_PIXELS
from freqdata.masks.resample import crop_resize
from freqdata.masks.rle import dct_encode_rle, rle_problem

__all__ = [
    "COORDINATE_RANGE",
    "METHODS",
    "SKIP_BAD_SEGMENTATION",
    "SKIP_CROWD",
    "SKIP_DEGENERATE_BOX",
    "SKIP_NO_POLYGON",
    "SKIP_OUT_OF_RANGE",
    "SKIP_TOO_LARGE",
    "MaskInstances",
    "bbox_problem",
    "full_image_masks",
    "image_problem",
    "load_coco",
    "load_instances",
    "outline_points",
    "polygon_problem",
]

SKIP_CROWD = "crowd"
SKIP_DEGENERATE_BOX = "degenerate box"
SKIP_NO_POLYGON = "no valid polygon"
SKIP_BAD_SEGMENTATION = "bad segmentation"
SKIP_OUT_OF_RANGE = "out of range"
SKIP_TOO_LARGE = "too large"

COORDINATE_RANGE = 4
"""Coordinates must lie within this many image sizes of the image origin (``|x| <= 4 W``,
``|y| <= 4 H``) and, for the ``"box"`` rasterization, within this many box sizes of the box
corner."""
_RASTER_SCALE = 5  # pycocotools' rleFrPoly draws the outline on a 5x finer grid

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
    * ``skipped``: ``(ann_id, reason)`` for every annotation left out (module docstring;
      ``"out of range"``, ``"too large"`` and ``"bad segmentation"`` reasons carry a
      ``": detail"``);
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
        """Number of skipped annotations per reason (the text before any ``": detail"``)."""
        return dict(Counter(reason.split(":", 1)[0] for _, reason in self.skipped))

    @property
    def crowd_skipped(self) -> int:
        """Number of ``iscrowd`` annotations left out (``include_crowd=False``)."""
        return sum(1 for _, reason in self.skipped if reason == SKIP_CROWD)


def load_coco(annotations: Annotations) -> dict[str, Any]:
    """The COCO dataset dict from a path to an ``instances_*.json`` file, or the dict itself
    (a ``pycocotools.coco.COCO`` object's ``.dataset`` works too).

    The structure is checked (entries are checked later, one by one): a JSON object with
    ``images`` and ``annotations`` lists and, when present (required by
    :func:`freqdata.masks.validate_annotations`, i.e. for encoding), a ``categories`` list
    of objects with unique integer ``id`` s; image ids unique. Anything else — invalid
    JSON, a top-level list, a missing or ill-typed key, a category without id, a duplicate
    id — raises :class:`~freqdata.errors.UsageError` naming the problem (nothing is encoded
    from a file that is not COCO).
    """
    if isinstance(annotations, dict):
        dataset = annotations
    elif isinstance(getattr(annotations, "dataset", None), dict):
        dataset = annotations.dataset  # type: ignore[union-attr]
    else:
        try:
            with open(annotations, encoding="utf-8") as f:
                dataset = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(
                f"{annotations}: not a COCO annotation file (invalid JSON: {e})"
            ) from None
    _check_structure(dataset, str(annotations) if isinstance(annotations, str | Path) else "")
    return dataset


def _check_structure(dataset: Any, name: str) -> None:
    where = f"{name}: " if name else ""
    if not isinstance(dataset, dict):
        raise UsageError(
            f"{where}COCO annotations must be a JSON object with images, annotations and "
            f"categories; got a {type(dataset).__name__}"
        )
    for key in ("images", "annotations", "categories"):
        if key == "categories" and key not in dataset:
            continue
        if not isinstance(dataset.get(key), list):
            what = "missing" if key not in dataset else f"a {type(dataset[key]).__name__}"
            raise UsageError(f"{where}COCO '{key}' must be a list; it is {what}")
    seen: set[int] = set()
    for j, c in enumerate(dataset.get("categories", [])):
        cid = c.get("id") if isinstance(c, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise UsageError(f"{where}category #{j} has no integer id: {c!r:.80}")
        if cid in seen:
            raise UsageError(f"{where}duplicate category id {cid}")
        seen.add(cid)
    seen.clear()
    for im in dataset["images"]:
        iid = im.get("id") if isinstance(im, dict) else None
        if isinstance(iid, int) and not isinstance(iid, bool):
            if iid in seen:
                raise UsageError(f"{where}duplicate image id {iid}")
            seen.add(iid)


@dataclass
class _Polygons:
    """Polygon parts of ``I`` instances, concatenated. Every part has an even length (and,
    from :func:`_valid_parts`, >= 3 points), so ``coords[0::2]`` are all the x and
    ``coords[1::2]`` all the y.

    * ``coords``: ``(N,)`` float64 ``x0, y0, x1, y1 ...`` of every part, instance by instance;
    * ``part_len``: ``(P,)`` int64 numbers per part;
    * ``n_parts``: ``(I,)`` int64 parts per instance.
    """

    coords: np.ndarray
    part_len: np.ndarray
    n_parts: np.ndarray

    @classmethod
    def pack(cls, parts_per_instance: Sequence[Sequence[np.ndarray]]) -> _Polygons:
        flat = [p for parts in parts_per_instance for p in parts]
        part_len = np.fromiter((p.size for p in flat), dtype=np.int64, count=len(flat))
        n_parts = np.fromiter(
            (len(parts) for parts in parts_per_instance), dtype=np.int64,
            count=len(parts_per_instance),
        )
        coords = np.concatenate(flat).astype(np.float64, copy=False) if flat else np.zeros(0)
        return cls(coords, part_len, n_parts)

    @property
    def vertex_owner(self) -> np.ndarray:
        """``(N // 2,)`` int64 instance of every vertex."""
        verts = _segment_sums(self.part_len // 2, self.n_parts)
        return np.repeat(np.arange(self.n_parts.size), verts)

    def split(self, coords: np.ndarray) -> list[list[np.ndarray]]:
        """``coords`` (this layout) as per-instance lists of part views."""
        views = np.split(coords, np.cumsum(self.part_len)[:-1]) if self.part_len.size else []
        bounds = np.concatenate(([0], np.cumsum(self.n_parts)))
        return [views[s:e] for s, e in pairwise(bounds)]


def _segment_sums(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sums of consecutive segments of ``values`` (int64 or bool) of the given ``lengths``
    (zero-length segments sum to 0): ``(len(lengths),)`` int64."""
    cs = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(values, out=cs[1:])
    ends = np.cumsum(lengths)
    return cs[ends] - cs[ends - lengths]


def _outline_counts(polys: _Polygons, coords: np.ndarray) -> np.ndarray:
    """:func:`outline_points` of every instance, ``(I,)`` int64, from ``coords`` in the
    layout of ``polys`` (finite and bounded)."""
    x = np.trunc(_RASTER_SCALE * coords[0::2] + 0.5)
    y = np.trunc(_RASTER_SCALE * coords[1::2] + 0.5)
    verts = polys.part_len // 2
    nxt = np.arange(1, x.size + 1)
    nxt[np.cumsum(verts)[verts > 0] - 1] = (np.cumsum(verts) - verts)[verts > 0]  # close parts
    steps = np.maximum(np.abs(x - x[nxt]), np.abs(y - y[nxt])).astype(np.int64)
    return _segment_sums(_segment_sums(steps, verts) + verts, polys.n_parts)


def _image_grid_problems(polys: _Polygons, hw: np.ndarray, max_pixels: int) -> list[str | None]:
    """:func:`polygon_problem` of every instance of ``polys`` (image sizes ``hw``: ``(I, 2)``
    int64 ``(H, W)``), vectorized over all their parts and vertices."""
    n = polys.n_parts.size
    out: list[str | None] = [None] * n
    if n == 0:
        return out
    c = polys.coords
    part_owner = np.repeat(np.arange(n), polys.n_parts)
    part_finite = _segment_sums(np.isfinite(c), polys.part_len) == polys.part_len
    vowner = np.repeat(part_owner, polys.part_len // 2)
    beyond = (np.abs(c[0::2]) > COORDINATE_RANGE * hw[vowner, 1]) | (
        np.abs(c[1::2]) > COORDINATE_RANGE * hw[vowner, 0]
    )
    part_bad = ~part_finite | (_segment_sums(beyond, polys.part_len // 2) > 0)
    # the first part with a problem decides the message (non-finite is checked before range)
    first_bad = np.full(n, part_owner.size)
    np.minimum.at(first_bad, part_owner[part_bad], np.flatnonzero(part_bad))
    ok = first_bad == part_owner.size
    points = _outline_counts(polys, np.where(np.repeat(ok[vowner], 2), c, 0.0))
    for i in np.flatnonzero(~ok):
        h, w = (int(v) for v in hw[i])
        out[i] = (
            f"{SKIP_OUT_OF_RANGE}: non-finite polygon coordinate"
            if not part_finite[first_bad[i]]
            else f"{SKIP_OUT_OF_RANGE}: polygon vertex beyond {COORDINATE_RANGE}x the image size "
            f"({w}x{h})"
        )
    for i in np.flatnonzero(ok & (points > max_pixels)):
        out[i] = (
            f"{SKIP_TOO_LARGE}: polygon outline of {int(points[i])} raster points exceeds "
            f"max_pixels={max_pixels}"
        )
    return out


def outline_points(parts: Sequence[np.ndarray]) -> int:
    """Points pycocotools' ``rleFrPoly`` draws (and allocates two C ints for) to rasterize
    these polygon parts: per edge ``max(|dx|, |dy|) + 1`` on its 5x grid, as ``maskApi.c``
    counts them. ``parts``: float64 ``(2n,)`` arrays ``x0, y0, x1, y1 ...`` in raster
    pixels, finite and bounded (:func:`polygon_problem`)."""
    polys = _Polygons.pack([parts])
    return int(_outline_counts(polys, polys.coords)[0])


def polygon_problem(
    parts: Sequence[np.ndarray], h: int, w: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> str | None:
    """Why these polygon parts (image pixel coordinates) must not be rasterized at ``h x w``:
    a non-finite coordinate or one beyond :data:`COORDINATE_RANGE` image sizes
    (``"out of range: ..."``; the first part with either decides which), an outline of more
    than ``max_pixels`` points (``"too large: ..."``); ``None`` when they are safe."""
    hw = np.array([[h, w]], dtype=np.int64)
    return _image_grid_problems(_Polygons.pack([parts]), hw, max_pixels)[0]


def image_problem(h: int, w: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """``"too large: ..."`` when an ``h x w`` image exceeds ``max_pixels`` (its masks and
    category maps are ``h x w`` arrays), else ``None``."""
    if h * w > max_pixels:
        return (
            f"{SKIP_TOO_LARGE}: image of {w}x{h} = {h * w} pixels exceeds max_pixels={max_pixels}"
        )
    return None


def _bbox_problems(boxes: np.ndarray, hw: np.ndarray) -> list[str | None]:
    """:func:`bbox_problem` of ``(I, 4)`` float64 boxes in images of sizes ``hw`` ``(I, 2)``."""
    finite = np.isfinite(boxes).all(axis=1)
    b = np.where(finite[:, None], boxes, 0.0)
    lim_x, lim_y = COORDINATE_RANGE * hw[:, 1], COORDINATE_RANGE * hw[:, 0]
    beyond = (
        (np.abs(b[:, 0]) > lim_x) | (np.abs(b[:, 0] + b[:, 2]) > lim_x)
        | (np.abs(b[:, 1]) > lim_y) | (np.abs(b[:, 1] + b[:, 3]) > lim_y)
    )
    out: list[str | None] = [None] * len(boxes)
    for i in np.flatnonzero(~finite | beyond):
        h, w = (int(v) for v in hw[i])
        out[i] = (
            f"{SKIP_OUT_OF_RANGE}: non-finite bbox" if not finite[i]
            else f"{SKIP_OUT_OF_RANGE}: bbox beyond {COORDINATE_RANGE}x the image size ({w}x{h})"
        )
    return out


def bbox_problem(bbox: np.ndarray, h: int, w: int) -> str | None:
    """Why a COCO ``[x, y, w, h]`` box is unusable: non-finite or beyond the coordinate range."""
    boxes = np.asarray(bbox, dtype=np.float64).reshape(1, 4)
    return _bbox_problems(boxes, np.array([[h, w]], dtype=np.int64))[0]


def _in_boxes(polys: _Polygons, boxes: np.ndarray, k: int) -> np.ndarray:
    """Polygon coordinates (layout of ``polys``) shifted by each instance's box corner and
    scaled so its box ``boxes[i]`` (``(I, 4)`` xywh) maps onto ``[0, k]^2`` (detectron2
    ``rasterize_polygons_within_box``)."""
    vowner = polys.vertex_owner
    sx = k / np.maximum(boxes[:, 2], 0.1)
    sy = k / np.maximum(boxes[:, 3], 0.1)
    q = np.empty_like(polys.coords)
    q[0::2] = (polys.coords[0::2] - boxes[vowner, 0]) * sx[vowner]
    q[1::2] = (polys.coords[1::2] - boxes[vowner, 1]) * sy[vowner]
    return q


def _box_grid_problems(
    polys: _Polygons, q: np.ndarray, k: int, max_pixels: int
) -> list[str | None]:
    """:func:`polygon_problem` on the K x K box grid (``q`` from :func:`_in_boxes`), per
    instance."""
    vowner = polys.vertex_owner
    beyond = np.zeros(polys.n_parts.size, dtype=bool)
    beyond[vowner[(np.abs(q[0::2]) > COORDINATE_RANGE * k)
                  | (np.abs(q[1::2]) > COORDINATE_RANGE * k)]] = True
    points = _outline_counts(polys, np.where(np.repeat(beyond[vowner], 2), 0.0, q))
    out: list[str | None] = [None] * polys.n_parts.size
    for i in np.flatnonzero(beyond):
        out[i] = f"{SKIP_OUT_OF_RANGE}: polygon vertex beyond {COORDINATE_RANGE}x its bbox size"
    for i in np.flatnonzero(~beyond & (points > max_pixels)):
        out[i] = (
            f"{SKIP_TOO_LARGE}: polygon outline of {int(points[i])} points in the {k}x{k} box "
            f"grid exceeds max_pixels={max_pixels}"
        )
    return out


def _valid_parts(segm: list[Any]) -> list[np.ndarray]:
    """Polygon parts with at least 3 points and an even number of coordinates (float64).

    Raises :class:`~freqdata.errors.InputError` (``"bad segmentation"``) for a part that is
    not a flat list of numbers."""
    parts = []
    for p in segm:
        if not isinstance(p, list | tuple | np.ndarray):
            raise InputError(f"{SKIP_BAD_SEGMENTATION}: polygon part is not a list of numbers")
        try:
            a = np.asarray(p, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise InputError(
                f"{SKIP_BAD_SEGMENTATION}: polygon part is not a list of numbers"
            ) from None
        if a.ndim != 1:
            raise InputError(f"{SKIP_BAD_SEGMENTATION}: polygon part is not a flat list")
        if a.size >= 6 and a.size % 2 == 0:
            parts.append(a)
    return parts


def _full_rle(
    segm: Any, h: int, w: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict[str, Any] | None:
    """One RLE of the instance at image resolution (None when it has no valid polygon);
    :class:`~freqdata.errors.InputError` for anything pycocotools must not see (module
    docstring)."""
    problem = image_problem(h, w, max_pixels)
    if problem:
        raise InputError(problem)
    if isinstance(segm, list):
        parts = _valid_parts(segm)
        if not parts:
            return None
        problem = polygon_problem(parts, h, w, max_pixels)
        if problem:
            raise InputError(problem)
        rles = mask_utils.frPyObjects(parts, h, w)
        return rles[0] if len(rles) == 1 else mask_utils.merge(rles)
    if isinstance(segm, dict) and "counts" in segm:
        problem = rle_problem(segm, h, w)
        if problem:
            raise InputError(problem)
        if isinstance(segm["counts"], list):  # uncompressed RLE
            return mask_utils.frPyObjects(segm, h, w)
        return segm
    raise InputError(SKIP_BAD_SEGMENTATION)


def _rasterize_in_boxes(boxed: Sequence[list[np.ndarray]], k: int) -> list[dict[str, Any]]:
    """detectron2 ``rasterize_polygons_within_box`` for many instances whose parts are
    already in box coordinates (:func:`_in_boxes`): one k x k RLE each (all polygon parts
    rasterized by one ``frPyObjects`` call, parts merged per instance)."""
    rles = mask_utils.frPyObjects([p for parts in boxed for p in parts], k, k)
    merged: list[dict[str, Any]] = []
    start = 0
    for parts in boxed:
        c = len(parts)
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
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> MaskInstances:
    """All instances of a COCO annotation file (or dataset dict) as ``k x k`` box masks.

    ``method``: ``"box"`` (polygons rasterized directly in box coordinates at k x k, as
    DCT-Mask / detectron2 ``rasterize_polygons_within_box``; RLEs via ``"crop"``) or
    ``"crop"`` (full-image mask, ROIAlign crop, ``>= 0.5``); see the module docstring for
    the exact conventions and the skip reasons. ``image_ids`` restricts to those images.
    ``max_pixels``: the image and outline limits (``"too large"``). Deterministic: same
    file and arguments → identical arrays. Nothing pycocotools could crash on reaches it:
    every instance is checked first (module docstring) and skipped with its reason.
    """
    if method not in METHODS:
        raise UsageError(f"method must be one of {METHODS}, got {method!r}")
    if k < 1:
        raise UsageError(f"k must be >= 1, got {k}")
    dataset = load_coco(annotations)
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in dataset["images"]}
    anns = _sorted_annotations(dataset, image_ids)
    reasons: list[str | None] = [None] * len(anns)
    # 1. per annotation: crowd, bbox parse, image size (the order of the checks is the order
    # of the reasons: an annotation gets the first that applies)
    cand: list[int] = []
    cand_boxes: list[np.ndarray] = []
    cand_hw: list[tuple[int, int]] = []
    for i, a in enumerate(anns):
        if a.get("iscrowd", 0) and not include_crowd:
            reasons[i] = SKIP_CROWD
            continue
        hw = sizes[int(a["image_id"])]
        try:
            bbox = np.asarray(a["bbox"], dtype=np.float64).reshape(4)
        except (TypeError, ValueError, OverflowError):
            reasons[i] = f"{SKIP_OUT_OF_RANGE}: bbox is not 4 numbers"
            continue
        problem = image_problem(*hw, max_pixels)
        if problem:
            reasons[i] = problem
            continue
        cand.append(i)
        cand_boxes.append(bbox)
        cand_hw.append(hw)
    boxes_c = np.array(cand_boxes, dtype=np.float64).reshape(len(cand), 4)
    hw_c = np.array(cand_hw, dtype=np.int64).reshape(len(cand), 2)
    # 2. boxes (all at once), degenerate boxes, the segmentation's structure
    poly_rows: list[int] = []  # positions in cand of polygon instances
    poly_parts: list[list[np.ndarray]] = []
    for j, (i, problem) in enumerate(zip(cand, _bbox_problems(boxes_c, hw_c), strict=True)):
        if problem is None and not (boxes_c[j, 2] >= 1.0 and boxes_c[j, 3] >= 1.0):
            problem = SKIP_DEGENERATE_BOX
        segm = anns[i].get("segmentation")
        if problem is None and isinstance(segm, list):
            try:
                valid = _valid_parts(segm)
            except InputError as e:
                problem = str(e)
            else:
                if valid:
                    poly_rows.append(j)
                    poly_parts.append(valid)
                else:
                    problem = SKIP_NO_POLYGON
        elif problem is None and isinstance(segm, dict) and "counts" in segm:
            problem = rle_problem(segm, *cand_hw[j])
        elif problem is None:
            problem = SKIP_BAD_SEGMENTATION
        reasons[i] = problem
    # 3. polygons, vectorized over all instances: image grid, then (box) the K x K box grid
    image_grid = _image_grid_problems(_Polygons.pack(poly_parts), hw_c[poly_rows], max_pixels)
    for j, problem in zip(poly_rows, image_grid, strict=True):
        reasons[cand[j]] = problem
    boxed: dict[int, list[np.ndarray]] = {}  # ann position → its parts in box coordinates
    if method == "box":
        sel = [s for s, problem in enumerate(image_grid) if problem is None]
        rows = [poly_rows[s] for s in sel]
        packed = _Polygons.pack([poly_parts[s] for s in sel])
        q = _in_boxes(packed, boxes_c[rows], k)
        for j, problem, parts in zip(
            rows, _box_grid_problems(packed, q, k, max_pixels), packed.split(q), strict=True
        ):
            reasons[cand[j]] = problem
            if problem is None:
                boxed[cand[j]] = parts
    kept = [a for a, r in zip(anns, reasons, strict=True) if r is None]
    parts = [boxed.get(i) for i, r in enumerate(reasons) if r is None]  # None: crop path
    skipped = [(int(a["id"]), r) for a, r in zip(anns, reasons, strict=True) if r is not None]

    m = len(kept)
    boxes = np.array([a["bbox"] for a in kept], dtype=np.float64).reshape(m, 4)
    image_ids_arr = np.array([int(a["image_id"]) for a in kept], dtype=np.int64)
    image_sizes = np.array([sizes[int(i)] for i in image_ids_arr], dtype=np.int64).reshape(m, 2)

    rles: list[dict[str, Any]] = [{} for _ in range(m)]
    poly_rows = [i for i in range(m) if parts[i] is not None]
    for s in range(0, len(poly_rows), _CHUNK):
        rows = poly_rows[s : s + _CHUNK]
        polys = [p for p in (parts[i] for i in rows) if p is not None]
        for i, rle in zip(rows, _rasterize_in_boxes(polys, k), strict=True):
            rles[i] = rle
    crop_rows = [i for i in range(m) if parts[i] is None]
    crop_masks = np.zeros((len(crop_rows), k, k), dtype=np.uint8)
    xyxy = boxes.copy()
    xyxy[:, 2:] += xyxy[:, :2]
    for j, i in enumerate(crop_rows):
        h_img, w_img = (int(v) for v in image_sizes[i])
        full = mask_utils.decode(_full_rle(kept[i]["segmentation"], h_img, w_img, max_pixels))
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


def full_image_masks(
    annotations: Annotations, ann_ids: Iterable[int], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[np.ndarray]:
    """Ground-truth masks at image resolution: one ``(H, W)`` uint8 {0, 1} array per id.

    pycocotools ``decode`` of the annotation's polygons (the valid parts, merged) or RLE at
    its image's size, i.e. ``COCO.annToMask`` with detectron2's polygon filtering. An id
    with no valid polygon gives an all-zero mask; an unknown id raises ``KeyError``; an
    annotation that fails the checks of the module docstring (image over ``max_pixels``,
    coordinates out of range, an undecodable RLE) raises
    :class:`~freqdata.errors.InputError` before anything is allocated.
    """
    dataset = load_coco(annotations)
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in dataset["images"]}
    by_id = {int(a["id"]): a for a in dataset["annotations"]}
    out = []
    for ann_id in ann_ids:
        a = by_id[int(ann_id)]
        h, w = sizes[int(a["image_id"])]
        rle = _full_rle(a["segmentation"], h, w, max_pixels)
        out.append(np.zeros((h, w), np.uint8) if rle is None else mask_utils.decode(rle))
    return out
