"""Masks in the frequency domain: DCT-Mask vectors, PatchDCT patches, block-wise weak labels.

Public API (conventions in each module's docstring):

* :func:`dct_encode` / :func:`dct_decode` — ``(M, K, K)`` masks ↔ ``(M, n)`` DCT-Mask vectors
  (orthonormal DCT-II, JPEG zigzag extended to K x K, float64 computation);
  :func:`dct_encode_rle` — the same vectors straight from pycocotools RLEs (no decoding);
* :func:`crop_resize` / :func:`paste_masks` — image ↔ box grid (detectron2 ROIAlign and
  ``paste_masks_in_image`` conventions);
* :func:`patch_encode` / :func:`patch_decode` — PatchDCT 8x8 patch vectors and 3-class labels;
* :func:`load_instances` → :class:`MaskInstances`, :func:`full_image_masks` — COCO
  annotations through pycocotools (``"box"`` or ``"crop"`` rasterization);
* :func:`reconstruction_ious`, :func:`mask_iou` — DCT-Mask's representation quality;
* :func:`blockwise`, :func:`label_spectrum`, :func:`energy_kept`, :func:`ce_spectrum`,
  :func:`relative_ce_loss_rate`, :func:`miou`, :func:`grid_size` — block-wise weak labels
  and their spectral analysis;
* torch twins (imported lazily, torch is optional): :func:`dct_encode_torch`,
  :func:`dct_decode_torch`, :func:`crop_resize_torch`, :func:`torch_targets`.
"""

from __future__ import annotations

from typing import Any

from freqdata.masks.coco import MaskInstances, full_image_masks, load_coco, load_instances
from freqdata.masks.dctmask import dct_decode, dct_encode
from freqdata.masks.patchdct import BACKGROUND, FOREGROUND, MIXED, patch_decode, patch_encode
from freqdata.masks.quality import mask_iou, reconstruction_ious
from freqdata.masks.resample import crop_resize, paste_masks
from freqdata.masks.rle import dct_encode_rle, rle_counts
from freqdata.masks.store import MaskStore as MaskStore
from freqdata.masks.store import encode_masks as encode_masks
from freqdata.masks.store import open_mask_store as open_mask_store
from freqdata.masks.weak import (
    IGNORE_INDEX,
    blockwise,
    ce_spectrum,
    energy_kept,
    grid_size,
    label_spectrum,
    miou,
    relative_ce_loss_rate,
)

_TORCH = ("crop_resize_torch", "dct_decode_torch", "dct_encode_torch", "torch_targets")

__all__ = [
    "BACKGROUND",
    "FOREGROUND",
    "IGNORE_INDEX",
    "MIXED",
    "MaskInstances",
    "blockwise",
    "ce_spectrum",
    "crop_resize",
    "crop_resize_torch",
    "dct_decode",
    "dct_decode_torch",
    "dct_encode",
    "dct_encode_rle",
    "dct_encode_torch",
    "energy_kept",
    "full_image_masks",
    "grid_size",
    "label_spectrum",
    "load_coco",
    "load_instances",
    "mask_iou",
    "miou",
    "paste_masks",
    "patch_decode",
    "patch_encode",
    "reconstruction_ious",
    "relative_ce_loss_rate",
    "rle_counts",
    "torch_targets",
]


def __getattr__(name: str) -> Any:
    if name in _TORCH:
        from freqdata.masks import torch_ops

        return getattr(torch_ops, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
