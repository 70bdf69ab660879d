"""Mask-representation quality: IoU between ground truth and its encoded-decoded reconstruction.

DCT-Mask's measure (Shen et al., CVPR 2021, Tables 1-2): each instance's K x K box mask is
encoded to n coefficients, decoded, pasted back into its box at image resolution
(:func:`freqdata.masks.paste_masks`, ``>= 0.5``) and compared with the original full-image
mask (:func:`freqdata.masks.full_image_masks`). With n = K*K (no truncation) it measures
the K x K grid alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from freqdata.masks.coco import Annotations, MaskInstances, full_image_masks, load_coco
from freqdata.masks.dctmask import dct_decode
from freqdata.masks.resample import paste_masks

__all__ = ["mask_iou", "reconstruction_ious"]


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of binary masks ``(M, H, W)`` pairwise along M → ``(M,)`` float64 (1.0 where both
    are empty). Non-zero = foreground."""
    a = np.asarray(a)
    b = np.asarray(b)
    a = a if a.dtype == np.bool_ else a != 0
    b = b if b.dtype == np.bool_ else b != 0
    axes = tuple(range(1, a.ndim))
    inter = np.count_nonzero(a & b, axis=axes)
    union = np.count_nonzero(a | b, axis=axes)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def reconstruction_ious(
    instances: MaskInstances,
    annotations: Annotations,
    n: int | Sequence[int | None] | None = 300,
    *,
    threshold: float = 0.5,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Per-instance IoU ``(M,)`` float64 between the full-image ground truth and the
    reconstruction ``paste(decode(encode(masks, n)), box) >= threshold``.

    ``score(reconstructions, truth)`` (both ``(m, H, W)`` bool, one image's instances →
    ``(m,)``) replaces :func:`mask_iou`, e.g. with a boundary IoU.

    ``n=None`` skips the DCT (pastes the K x K masks themselves: the grid's own loss). A
    sequence of ``n`` gives ``(len(n), M)``, decoding the ground truth once.
    ``annotations`` must be the file (or dict) ``instances`` was loaded from.
    """
    dataset = load_coco(annotations)
    scalar = n is None or isinstance(n, int | np.integer)
    ns: list[int | None] = [n] if scalar else list(n)  # type: ignore[list-item]
    k = instances.k
    softs = []
    for nn in ns:
        if nn is None:
            softs.append(instances.masks.astype(np.float64))
        else:
            softs.append(dct_decode(instances.dct_vectors(nn, dtype=np.float64), k,
                                    dtype=np.float64))
    boxes = instances.boxes_xyxy
    ious = np.empty((len(ns), len(instances)), dtype=np.float64)
    for image_id in np.unique(instances.image_ids):
        rows = np.nonzero(instances.image_ids == image_id)[0]
        h, w = (int(v) for v in instances.image_sizes[rows[0]])
        truth = np.stack(full_image_masks(dataset, instances.ann_ids[rows])).astype(bool)
        for j, soft in enumerate(softs):
            pasted = paste_masks(soft[rows], boxes[rows], (h, w), threshold)
            ious[j, rows] = (score or mask_iou)(pasted, truth)
    return ious[0] if scalar else ious
