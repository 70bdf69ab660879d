"""Oracle-box evaluation of predicted instance masks: COCO mask AP, mean mask IoU, boundary IoU.

The heads predict a soft ``K x K`` mask for each ground-truth box; :func:`paste` puts it
into the image (:func:`freqdata.masks.paste_masks`: detectron2's ``paste_masks_in_image``,
bilinear, ``>= 0.5``). :class:`MaskEvaluator` collects the pasted masks image by image and
:meth:`MaskEvaluator.summary` reports

* ``AP``, ``AP50``, ``AP75`` (and ``APs``/``APm``/``APl``): pycocotools ``COCOeval`` with
  ``iouType="segm"`` against the (canvas) ground truth, the detections being the ground-truth
  boxes with their true category and score 1 (**oracle-box AP**: it measures the masks
  alone; with equal scores the ranking is the instance order, ``(image_id, ann_id)``);
* ``mask_iou``: mean IoU between each pasted mask and its ground-truth mask
  (:func:`freqdata.masks.mask_iou`);
* ``boundary_iou``: mean Boundary IoU (Cheng et al. 2021; dilation ratio 0.02 of the image
  diagonal, :func:`freqdata.masks.report.boundary_iou`);
* ``instances``, ``images``: what was evaluated.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from freqdata.masks import mask_iou, paste_masks
from freqdata.masks.report import boundary_iou

__all__ = ["MaskEvaluator", "paste"]

_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def paste(
    soft: np.ndarray, boxes: np.ndarray, size: tuple[int, int], threshold: float = 0.5
) -> np.ndarray:
    """Soft box masks ``(M, K, K)`` into boxes ``(M, 4)`` xyxy of an ``(H, W)`` image →
    ``(M, H, W)`` bool (:func:`freqdata.masks.paste_masks`)."""
    return paste_masks(np.asarray(soft, np.float64), np.asarray(boxes, np.float64), size,
                       threshold)  # fmt: skip


class MaskEvaluator:
    """Accumulates oracle-box predictions of one evaluation pass over a COCO dict ``coco``
    (e.g. :func:`freqdata.trainers.mask_data.canvas_annotations`'s)."""

    def __init__(self, coco: dict[str, Any]) -> None:
        self.coco = coco
        self.results: list[dict[str, Any]] = []
        self.ious: list[np.ndarray] = []
        self.bious: list[np.ndarray] = []
        self.images: set[int] = set()

    def add(
        self,
        image_id: int,
        pasted: np.ndarray,
        truth: np.ndarray,
        ann_ids: np.ndarray,
        categories: np.ndarray,
    ) -> None:
        """One image: pasted masks ``(m, H, W)`` bool, ground truth ``(m, H, W)``, their
        annotation ids and COCO category ids ``(m,)``."""
        self.images.add(int(image_id))
        if pasted.shape[0] == 0:
            return
        self.ious.append(mask_iou(pasted, truth))
        self.bious.append(boundary_iou(truth, pasted))
        rles = mask_utils.encode(np.asfortranarray(np.moveaxis(pasted.astype(np.uint8), 0, -1)))
        for rle, cat in zip(rles, categories, strict=True):
            rle["counts"] = rle["counts"].decode("ascii")
            self.results.append({"image_id": int(image_id), "category_id": int(cat),
                                 "segmentation": rle, "score": 1.0})  # fmt: skip

    def summary(self) -> dict[str, float]:
        """AP figures (fractions, pycocotools' -1 kept for empty size ranges), mean mask IoU,
        mean boundary IoU, instance and image counts."""
        out: dict[str, float] = {"instances": float(sum(len(i) for i in self.ious)),
                                 "images": float(len(self.images))}  # fmt: skip
        if not self.results:
            return {**out, **{k: 0.0 for k in _STATS}, "mask_iou": 0.0, "boundary_iou": 0.0}
        gt = COCO()
        images = [im for im in self.coco["images"] if int(im["id"]) in self.images]
        anns = [a for a in self.coco["annotations"] if int(a["image_id"]) in self.images]
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": self.coco["categories"]}  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            dt = gt.loadRes(self.results)
            ev = COCOeval(gt, dt, iouType="segm")
            ev.params.imgIds = sorted(self.images)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out.update({k: float(v) for k, v in zip(_STATS, ev.stats[:6], strict=True)})
        out["mask_iou"] = float(np.concatenate(self.ious).mean())
        out["boundary_iou"] = float(np.concatenate(self.bious).mean())
        return out
