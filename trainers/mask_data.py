"""Store-fed data for the mask trainer: image stores + COCO annotations in the stored geometry.

Image geometry: the images are encoded once with freqdata's pixel path at a fixed square
canvas, ``--geometry S:S`` (shorter side resized to ``S``, centre ``S x S`` crop; 320:320 in
the experiment), as a DCT store (``freqdata encode images ... --path pixels``, ``--input
dct``: ``(C, 40, 40)`` cubes) or an RGB store (``freqdata train rgb-store``, ``--input rgb``).
The annotations are mapped into the same canvas by :func:`canvas_annotations`, the exact
transform of the pixel path (:func:`freqdata.pixels.resized_size`; source pixel ``x``
lands at ``x · tw / W − left``, ``left = (tw − C) // 2``, the same in y): polygons are
transformed and rasterized by pycocotools at ``C x C`` (cut at the canvas border); each
instance's box becomes the tight box of its canvas mask and its area the mask's pixel
count; instances left with fewer than ``min_area`` pixels (cropped away), crowd regions and
RLE segmentations are dropped (counted in ``"dropped"``). The result is an ordinary COCO
dict: :func:`freqdata.masks.full_image_masks` gives the canvas ground truth and
pycocotools evaluates against it.

:class:`MaskData` pairs store rows with images (by file name) and yields batches: the
normalized image tensor (the store's per-channel statistics), the instances' canvas
masks ``(G, C, C)`` uint8, boxes ``(G, 4)`` xyxy, category ids and image ids.
:func:`jitter_boxes` perturbs ground-truth boxes like proposals (seeded, IoU >= 0.5).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import torch

from freqdata.errors import StoreError, UsageError
from freqdata.loader import StoreDataset
from freqdata.masks import full_image_masks, load_coco
from freqdata.masks.coco import Annotations
from freqdata.masks.store import match_images
from freqdata.pixels import parse_geometry, resized_size
from freqdata.store import open_store

from .rgb import RGBStore, is_rgb_store

__all__ = ["MaskBatch", "MaskData", "box_iou_pairs", "canvas_annotations", "jitter_boxes"]


def _canvas_transform(
    width: int, height: int, resize: int, crop: int
) -> tuple[float, float, int, int]:
    """``(sx, sy, left, top)``: canvas ``x' = x · sx − left``, ``y' = y · sy − top``."""
    tw, th = resized_size(width, height, resize)
    return tw / width, th / height, (tw - crop) // 2, (th - crop) // 2


def canvas_annotations(
    annotations: Annotations, geometry: str = "320:320", *, min_area: int = 4
) -> dict[str, Any]:
    """A COCO dataset dict in the canvas of ``geometry`` (``"S:C"``; module docstring).

    Images keep their ids and file names with ``height = width = C``; each kept annotation
    has its polygons in canvas pixels, ``bbox`` = tight ``[x, y, w, h]`` of its canvas mask
    (integers), ``area`` = its pixel count, ``iscrowd = 0``. ``"dropped"`` lists
    ``[ann_id, reason]`` for the others (``crowd``, ``rle``, ``cropped away``).
    """
    geom = parse_geometry(geometry)
    if geom.resize is None or geom.crop is None or geom.crop != geom.resize:
        raise UsageError(f"the mask trainer needs a square canvas geometry S:S, got {geometry!r}")
    c = geom.crop
    src = load_coco(annotations)
    out: dict[str, Any] = {k: copy.deepcopy(v) for k, v in src.items()
                           if k not in ("images", "annotations")}  # fmt: skip
    images = {int(im["id"]): im for im in src["images"]}
    out["images"] = [{**im, "height": c, "width": c} for im in src["images"]]
    anns, dropped = [], []
    for a in sorted(src["annotations"], key=lambda a: (int(a["image_id"]), int(a["id"]))):
        im = images[int(a["image_id"])]
        segm = a.get("segmentation")
        if a.get("iscrowd", 0):
            dropped.append([int(a["id"]), "crowd"])
            continue
        if not isinstance(segm, list):
            dropped.append([int(a["id"]), "rle"])
            continue
        sx, sy, left, top = _canvas_transform(int(im["width"]), int(im["height"]), geom.resize, c)
        polys = []
        for p in segm:
            q = np.asarray(p, dtype=np.float64).ravel()
            if q.size < 6 or q.size % 2:
                continue
            q = q.copy()
            q[0::2] = q[0::2] * sx - left
            q[1::2] = q[1::2] * sy - top
            polys.append(q.tolist())
        mask = _rasterize(polys, c)
        area = int(mask.sum())
        if area < min_area:
            dropped.append([int(a["id"]), "cropped away"])
            continue
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        x0, y0 = int(cols[0]), int(rows[0])
        bbox = [x0, y0, int(cols[-1]) + 1 - x0, int(rows[-1]) + 1 - y0]
        anns.append({"id": int(a["id"]), "image_id": int(a["image_id"]),
                     "category_id": int(a["category_id"]), "segmentation": polys,
                     "bbox": bbox, "area": area, "iscrowd": 0})  # fmt: skip
    out["annotations"] = anns
    out["dropped"] = dropped
    out["canvas"] = {"geometry": geometry, "size": c}
    return out


def _rasterize(polys: list[list[float]], c: int) -> np.ndarray:
    if not polys:
        return np.zeros((c, c), np.uint8)
    rles = mask_utils.frPyObjects(polys, c, c)
    return mask_utils.decode(mask_utils.merge(rles))


def box_iou_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of box pairs ``(M, 4)`` xyxy → ``(M,)``."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(1)  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp(min=1e-9)


def jitter_boxes(
    boxes: torch.Tensor,
    generator: torch.Generator,
    *,
    shift: float = 0.1,
    scale: float = 0.2,
    min_iou: float = 0.5,
    tries: int = 10,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Proposal-like boxes around ground truth ``(M, 4)`` xyxy float: centre shifted by
    ``U(−shift, shift)`` times the side, each side scaled by ``exp(U(−scale, scale))``;
    of ``tries`` draws per box the first with IoU >= ``min_iou`` is kept (the ground-truth
    box itself if none is). Clipped to ``size`` ``(H, W)`` when given. Deterministic in
    ``generator``."""
    m = boxes.shape[0]
    b = boxes.float()
    wh = b[:, 2:] - b[:, :2]
    ctr = b[:, :2] + wh / 2
    u = torch.rand(tries, m, 4, generator=generator) * 2 - 1
    c = ctr + u[..., :2] * shift * wh
    s = wh * torch.exp(u[..., 2:] * scale)
    cand = torch.cat([c - s / 2, c + s / 2], -1)  # (tries, M, 4)
    if size is not None:
        h, w = size
        cand = torch.stack([cand[..., 0].clamp(0, w), cand[..., 1].clamp(0, h),
                            cand[..., 2].clamp(0, w), cand[..., 3].clamp(0, h)], -1)  # fmt: skip
    ious = torch.stack([box_iou_pairs(cand[t], b) for t in range(tries)])  # (tries, M)
    ok = ious >= min_iou
    first = torch.where(ok.any(0), ok.to(torch.int64).argmax(0), torch.full((m,), -1))
    out = b.clone()
    sel = first >= 0
    out[sel] = cand[first[sel], torch.nonzero(sel).flatten()]
    return out


@dataclass
class MaskBatch:
    """One batch: ``images`` ``(B, C, h, w)`` float32 normalized (DCT blocks or RGB pixels),
    ``masks`` ``(G, S, S)`` uint8 canvas masks of all instances, ``boxes`` ``(G, 4)``
    float32 xyxy canvas pixels (ground truth), ``batch_index`` ``(G,)`` int64 (image of
    each instance in the batch), ``categories`` ``(G,)`` int64 COCO ids, ``ann_ids``
    ``(G,)`` int64, ``image_ids`` ``(B,)`` int64."""

    images: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor
    batch_index: torch.Tensor
    categories: torch.Tensor
    ann_ids: torch.Tensor
    image_ids: torch.Tensor


class MaskData:
    """An image store (DCT or RGB) + the canvas COCO dict of its images.

    ``store``: path of the store (its ``paths`` name the image files); ``annotations``: a
    COCO file or dict (mapped with :func:`canvas_annotations` at the store's geometry).
    Images of the annotation file without a store row, and store rows without
    annotations, are left out; images without any kept instance are left out too.
    ``max_instances``: instances per image used in training (the first by annotation id;
    None = all). ``stats_store``: the store whose per-channel mean / std normalize the
    images (the training store for validation data; default: ``store`` itself).
    ``len()`` = images; :meth:`batch` reads a list of image positions (one bulk read through
    :meth:`freqdata.loader.StoreDataset.read_batch`, never one call per image).
    """

    def __init__(
        self,
        store: str | Path,
        annotations: Annotations,
        *,
        max_instances: int | None = None,
        stats_store: str | Path | None = None,
    ) -> None:
        self.rgb = is_rgb_store(store)
        self.store: Any = RGBStore(store) if self.rgb else open_store(store)
        if not self.rgb and self.store.parts[0].grid is None:
            raise UsageError(f"{store} holds ragged images: encode it with --geometry S:S")
        geometry = self.store.config.get("geometry")
        if not isinstance(geometry, str):
            raise UsageError(f"{store} has no S:C geometry (got {geometry!r})")
        self.coco = canvas_annotations(annotations, geometry)
        self.size = int(self.coco["canvas"]["size"])
        by_image: dict[int, list[dict[str, Any]]] = {}
        for a in self.coco["annotations"]:
            by_image.setdefault(int(a["image_id"]), []).append(a)
        images = sorted(self.coco["images"], key=lambda im: int(im["id"]))
        found = match_images(self.store.paths, [im.get("file_name") for im in images],
                             [im["id"] for im in images])
        self.image_ids: list[int] = []
        self.rows: list[int] = []
        self.anns: list[list[dict[str, Any]]] = []
        for im, row in zip(images, found.tolist(), strict=True):
            iid = int(im["id"])
            if row >= 0 and iid in by_image:
                self.image_ids.append(iid)
                self.rows.append(row)
                self.anns.append(by_image[iid][:max_instances] if max_instances else by_image[iid])
        if not self.image_ids:
            raise StoreError(f"no image of the annotations is in {store}")
        self.reader = StoreDataset(self.store, rows=self.rows)  # bulk reads of these rows
        stats = self.store
        if stats_store is not None:
            stats = RGBStore(stats_store) if self.rgb else open_store(stats_store)
        self.mean = torch.tensor(np.asarray(stats.mean, np.float32))[:, None, None]
        self.std = torch.tensor(np.asarray(stats.std, np.float32))[:, None, None]
        if self.mean.shape[0] != (3 if self.rgb else len(self.store.channel_names)):
            raise UsageError(f"{stats_store} has other channels than {store}")
        self.in_channels = 3 if self.rgb else len(self.store.channel_names)
        self.input = "rgb" if self.rgb else "dct"

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def instances(self) -> int:
        return sum(len(a) for a in self.anns)

    def _images(self, positions: list[int]) -> torch.Tensor:
        batch = self.reader.read_batch(positions)
        x = batch[self.reader.parts[0].name].float()
        return (x - self.mean) / self.std

    def batch(self, positions: list[int]) -> MaskBatch:
        """The images at ``positions`` (indices into this dataset) and their instances."""
        anns = [a for p in positions for a in self.anns[p]]
        masks = np.stack(full_image_masks(self.coco, [a["id"] for a in anns]))
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32)
        boxes[:, 2:] += boxes[:, :2]
        return MaskBatch(
            images=self._images(positions),
            masks=torch.from_numpy(masks),
            boxes=boxes,
            batch_index=torch.tensor(
                [i for i, p in enumerate(positions) for _ in self.anns[p]], dtype=torch.int64
            ),
            categories=torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            ann_ids=torch.tensor([a["id"] for a in anns], dtype=torch.int64),
            image_ids=torch.tensor([self.image_ids[p] for p in positions], dtype=torch.int64),
        )
