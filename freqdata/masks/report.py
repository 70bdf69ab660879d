"""Quality reports: how faithful DCT-Mask vectors and block-wise weak labels are (tables, PNG).

* :func:`masks_quality` — DCT-Mask's representation quality (Shen et al., CVPR 2021,
  Tables 1-2): mean IoU between every ground-truth mask (full image) and its reconstruction
  (:func:`freqdata.masks.reconstruction_ious`: decode, paste bilinearly into the box,
  ``>= 0.5``), for the K x K grid alone and for n DCT coefficients, optionally also the
  boundary IoU (:func:`boundary_iou`); the paper's figures beside ours and PASS/FAIL checks
  of the paper's structure (:func:`structure_checks`).
* :func:`weak_quality` — per band limit nu_max: the label spectrum's energy kept
  (:func:`freqdata.masks.energy_kept`, mean over images) and the mIoU of the block-wise
  label against the full label (an upper bound for training on block-wise labels).
* :func:`boundary_iou` / :func:`mask_to_boundary` — Boundary IoU (Cheng et al., CVPR 2021).
* :func:`render_masks_png`, :func:`render_weak_png` — figures drawn with Pillow.

Boundary IoU (the official ``boundary_iou_api`` ``mask_to_boundary``): with
``d = max(1, round(dilation_ratio * sqrt(H^2 + W^2)))`` for an ``H x W`` image, a mask's
boundary region is the mask minus its erosion by a 3x3 square iterated d times, pixels
outside the image counting as background (the API pads by one zero pixel before
``cv2.erode``). Here: ``scipy.ndimage.binary_erosion(structure=ones((3, 3)),
iterations=d, border_value=0)`` on a crop around the masks (exact: the crop keeps every
pixel within d + 1 of the foreground, and image edges stay image edges). Boundary IoU =
``|B(gt) & B(pred)| / |B(gt) | B(pred)|`` (1.0 when both are empty).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from freqdata.errors import UsageError
from freqdata.masks.coco import (
    Annotations,
    MaskInstances,
    full_image_masks,
    load_coco,
    load_instances,
)
from freqdata.masks.dctmask import dct_decode
from freqdata.masks.quality import mask_iou, reconstruction_ious
from freqdata.masks.resample import paste_masks
from freqdata.masks.store import category_mapping, category_maps, validate_annotations
from freqdata.masks.weak import IGNORE_INDEX, blockwise, energy_kept, miou

__all__ = [
    "PAPER_DCT",
    "PAPER_GRID",
    "PROTOCOLS",
    "MasksQuality",
    "boundary_distance",
    "boundary_iou",
    "dctmask_repo_ious",
    "mask_to_boundary",
    "masks_quality",
    "reconstruction_boundary_ious",
    "render_masks_png",
    "render_masks_table",
    "render_weak_png",
    "render_weak_table",
    "structure_checks",
    "weak_quality",
]

#: DCT-Mask (Shen et al., CVPR 2021) mean mask IoU on COCO val2017: the K x K grid alone ...
PAPER_GRID: dict[int, float] = {28: 0.938, 64: 0.968, 128: 0.980}
#: ... and (K, n) DCT vectors.
PAPER_DCT: dict[tuple[int, int], float] = {
    (128, 100): 0.940, (128, 300): 0.970, (128, 500): 0.976, (128, 700): 0.979,
    (256, 100): 0.940, (256, 300): 0.970, (256, 500): 0.977, (256, 700): 0.980,
}
#: COCO's object size classes by annotated area (pixels).
SIZE_CLASSES = (("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2),
                ("large", 96.0**2, math.inf))
#: ``full-image``: foreground IoU against the full-image ground truth (docs/masks.md §3, the
#: default); ``dctmask-repo``: DCT-Mask's own evaluate_iou.py (:func:`dctmask_repo_ious`).
PROTOCOLS = ("full-image", "dctmask-repo")
CLOSE = 0.01  # "n=100 ~ 28x28 grid", "n=300 ~ 64x64 grid": within this IoU
K_TOLERANCE = 0.002  # at fixed n a larger K may lose this much (the paper: 0.000-0.001 gain)
CHUNK_IMAGES = 64  # images per reconstruction batch (bounds memory on large files)


# --------------------------------------------------------------------------- boundary IoU


def boundary_distance(size: tuple[int, int], dilation_ratio: float = 0.02) -> int:
    """``d = max(1, round(dilation_ratio * sqrt(H^2 + W^2)))`` pixels for an ``(H, W)`` image."""
    h, w = size
    return max(1, round(dilation_ratio * math.hypot(h, w)))


def _boundary(mask: np.ndarray, d: int) -> np.ndarray:
    """``mask & ~erode(mask, 3x3, d times)`` with zero border, bool (same shape)."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    eroded = ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), iterations=d,
                                    border_value=0)
    return mask & ~eroded


def _bbox(mask: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    return (slice(max(0, rows[0] - pad), min(h, rows[-1] + pad + 1)),
            slice(max(0, cols[0] - pad), min(w, cols[-1] + pad + 1)))


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """The boundary region of a binary mask ``(H, W)`` → ``(H, W)`` bool: the mask minus its
    erosion by a 3x3 square iterated ``d = boundary_distance((H, W), dilation_ratio)`` times,
    outside the image = background (module docstring)."""
    m = np.asarray(mask) != 0
    if m.ndim != 2:
        raise UsageError(f"mask must be (H, W), got {m.shape}")
    d = boundary_distance(m.shape, dilation_ratio)
    out = np.zeros(m.shape, dtype=bool)
    box = _bbox(m, d + 1)
    if box is not None:
        out[box] = _boundary(m[box], d)
    return out


def boundary_iou(a: np.ndarray, b: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """Boundary IoU of binary masks ``(M, H, W)`` pairwise along M → ``(M,)`` float64 (1.0
    where both boundaries are empty). ``(H, W)`` inputs give a 0-d result. The distance ``d``
    comes from the image size ``(H, W)`` (:func:`boundary_distance`)."""
    x, y = np.asarray(a) != 0, np.asarray(b) != 0
    if x.shape != y.shape or x.ndim not in (2, 3):
        raise UsageError(f"masks must be matching (M, H, W) or (H, W): {x.shape}, {y.shape}")
    single = x.ndim == 2
    if single:
        x, y = x[None], y[None]
    d = boundary_distance(x.shape[1:], dilation_ratio)
    out = np.ones(x.shape[0], dtype=np.float64)
    for i in range(x.shape[0]):
        box = _bbox(x[i] | y[i], d + 1)
        if box is None:
            continue
        bx, by = _boundary(x[i][box], d), _boundary(y[i][box], d)
        union = np.count_nonzero(bx | by)
        if union:
            out[i] = np.count_nonzero(bx & by) / union
    return out[0] if single else out


def reconstruction_boundary_ious(
    instances: MaskInstances,
    annotations: Annotations,
    n: Sequence[int | None],
    *,
    threshold: float = 0.5,
    dilation_ratio: float = 0.02,
) -> np.ndarray:
    """Boundary IoU ``(len(n), M)`` float64 between ground truth and reconstruction, the same
    reconstructions as :func:`freqdata.masks.reconstruction_ious` (``None`` = the K x K grid
    without DCT) scored with :func:`boundary_iou` instead of :func:`freqdata.masks.mask_iou`."""
    def score(pasted: np.ndarray, truth: np.ndarray) -> np.ndarray:
        return boundary_iou(truth, pasted, dilation_ratio)

    return reconstruction_ious(instances, annotations, list(n), threshold=threshold, score=score)


def _cv2_linear(src: int, dst: int) -> np.ndarray:
    """``(dst, src)`` weights of OpenCV's ``resize(INTER_LINEAR)`` along one axis: destination
    pixel x samples ``(x + 0.5) * src / dst - 0.5``, clamped to the first / last source pixel
    (replicated border, no anti-aliasing when shrinking)."""
    f = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    lo = np.floor(f).astype(np.int64)
    a = f - lo
    a[lo < 0], lo[lo < 0] = 0.0, 0
    edge = lo >= src - 1
    a[edge], lo[edge] = 0.0, src - 1
    w = np.zeros((dst, src), dtype=np.float64)
    rows = np.arange(dst)
    np.add.at(w, (rows, lo), 1.0 - a)
    np.add.at(w, (rows, np.minimum(lo + 1, src - 1)), a)
    return w


def dctmask_repo_ious(
    instances: MaskInstances, annotations: Annotations, n: Sequence[int | None]
) -> np.ndarray:
    """DCT-Mask's own measure (``projects/DCT_Mask/dct_mask/evaluate_iou.py`` in
    aliyun/DCT-Mask), ``(len(n), M)`` float64; ``None`` = the K x K grid without DCT.

    Per instance: the ground truth is the polygon rasterized *inside its box* at the rounded
    box size ``round(h) x round(w)`` (pycocotools, like the K x K box masks); the decoded K x K
    mask is resized to that size with OpenCV's bilinear ``resize`` (:func:`_cv2_linear`) and
    thresholded at ``>= 0.5``; the score is the *two-class* mean IoU (background and
    foreground inside the box, ``nanmean``). Instances without polygons (RLE) give NaN.
    """
    import pycocotools.mask as mask_utils

    from freqdata.masks.coco import _valid_parts

    dataset = load_coco(annotations)
    by_id = {int(a["id"]): a for a in dataset["annotations"]}
    k = instances.k
    softs = [instances.masks.astype(np.float64) if nn is None else
             dct_decode(instances.dct_vectors(nn, dtype=np.float64), k, dtype=np.float64)
             for nn in n]
    out = np.full((len(softs), len(instances)), np.nan, dtype=np.float64)
    for i, ann_id in enumerate(instances.ann_ids):
        a = by_id[int(ann_id)]
        x, y, bw, bh = (float(v) for v in a["bbox"])
        w, h = round(bw), round(bh)
        segm = a["segmentation"]
        if not isinstance(segm, list) or w < 1 or h < 1:
            continue
        parts = []
        for p in _valid_parts(segm):
            q = p.copy()
            q[0::2] = (q[0::2] - x) * (w / max(bw, 0.1))
            q[1::2] = (q[1::2] - y) * (h / max(bh, 0.1))
            parts.append(q)
        truth = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(parts, h, w))) != 0
        wy, wx = _cv2_linear(k, h), _cv2_linear(k, w)
        for j, soft in enumerate(softs):
            rec = (wy @ soft[i] @ wx.T) >= 0.5
            ious = []
            for cls in (False, True):
                union = np.count_nonzero((truth == cls) | (rec == cls))
                ious.append(np.count_nonzero((truth == cls) & (rec == cls)) / union
                            if union else np.nan)
            out[j, i] = np.nanmean(ious)
    return out


# --------------------------------------------------------------------------- masks quality


@dataclass
class MasksQuality:
    """A :func:`masks_quality` run: ``result`` (JSON-able, see there) and the per-instance
    figures behind it: ``ann_ids``, ``image_ids``, ``areas`` ``(M,)``; ``ious[(k, n)]`` and
    ``boundary[(k, n)]`` ``(M,)`` float64 (``n = None``: the grid alone)."""

    result: dict[str, Any]
    ann_ids: np.ndarray
    image_ids: np.ndarray
    areas: np.ndarray
    ious: dict[tuple[int, int | None], np.ndarray] = field(default_factory=dict)
    boundary: dict[tuple[int, int | None], np.ndarray] = field(default_factory=dict)


def _size_table(values: np.ndarray, areas: np.ndarray) -> dict[str, dict[str, Any]]:
    out = {}
    for name, lo, hi in SIZE_CLASSES:
        sel = (areas >= lo) & (areas < hi) & ~np.isnan(values)
        out[name] = {"count": int(sel.sum()),
                     "iou": float(values[sel].mean()) if sel.any() else None}
    return out


def masks_quality(
    annotations: Annotations,
    ks: Sequence[int] = (28, 64, 128, 256),
    ns: Sequence[int] = (100, 300, 500, 700),
    *,
    method: str = "box",
    protocol: str = "full-image",
    boundary: bool = False,
    dilation_ratio: float = 0.02,
    image_ids: Iterable[int] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> MasksQuality:
    """DCT-Mask's representation quality on a COCO annotation file (or dict).

    For each K in ``ks``: the grid alone and every n in ``ns`` with ``n <= K*K``; per
    configuration the mean IoU (and boundary IoU when ``boundary``) over all instances
    (:func:`freqdata.masks.load_instances` with ``method``; crowd regions and annotations
    that cannot be encoded left out), the paper's figure where it has one, and the mean IoU
    per COCO size class. ``protocol``: ``"full-image"`` — foreground IoU against the
    full-image ground truth (:func:`freqdata.masks.reconstruction_ious`); ``"dctmask-repo"`` —
    DCT-Mask's own two-class in-box measure (:func:`dctmask_repo_ious`; no boundary IoU).
    Instances are processed in batches of images (bounded memory).
    ``on_progress(done, total)`` counts (K, batch) steps. ``result["checks"]`` holds
    :func:`structure_checks`.
    """
    ks = sorted({int(k) for k in ks})
    ns = sorted({int(n) for n in ns})
    if not ks or not ns or ks[0] < 1 or ns[0] < 1:
        raise UsageError(f"need K >= 1 and n >= 1, got ks={ks}, ns={ns}")
    if protocol not in PROTOCOLS:
        raise UsageError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if boundary and protocol != "full-image":
        raise UsageError("boundary IoU is measured with the full-image protocol only")
    clean, errors = validate_annotations(annotations, image_ids)
    images = [int(im["id"]) for im in clean["images"]]
    by_image: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
    for a in clean["annotations"]:
        by_image[int(a["image_id"])].append(a)
    chunks = [images[s : s + CHUNK_IMAGES] for s in range(0, len(images), CHUNK_IMAGES)]
    ious: dict[tuple[int, int | None], list[np.ndarray]] = {}
    bious: dict[tuple[int, int | None], list[np.ndarray]] = {}
    ann_ids = image_ids_arr = areas = None
    skipped: dict[str, int] = {}
    total, done = len(ks) * len(chunks), 0
    if on_progress:
        on_progress(0, total)
    for k in ks:
        configs: list[int | None] = [None, *(n for n in ns if n <= k * k)]
        ids_k, img_k, area_k = [], [], []
        for chunk in chunks:
            sub = {"images": [im for im in clean["images"] if int(im["id"]) in set(chunk)],
                   "categories": clean["categories"],
                   "annotations": [a for i in chunk for a in by_image[i]]}
            inst = load_instances(sub, k=k, method=method)
            if k == ks[0]:
                for _, reason in inst.skipped:
                    skipped[reason] = skipped.get(reason, 0) + 1
            ids_k.append(inst.ann_ids)
            img_k.append(inst.image_ids)
            area_k.append(inst.areas)
            if len(inst):
                r = (reconstruction_ious(inst, sub, configs) if protocol == "full-image"
                     else dctmask_repo_ious(inst, sub, configs))
                for j, nn in enumerate(configs):
                    ious.setdefault((k, nn), []).append(r[j])
                if boundary:
                    b = reconstruction_boundary_ious(inst, sub, configs,
                                                     dilation_ratio=dilation_ratio)
                    for j, nn in enumerate(configs):
                        bious.setdefault((k, nn), []).append(b[j])
            inst = None  # free the decoded masks before the next batch
            done += 1
            if on_progress:
                on_progress(done, total)
        this = np.concatenate(ids_k) if ids_k else np.zeros(0, np.int64)
        if ann_ids is None:
            ann_ids, image_ids_arr = this, np.concatenate(img_k) if img_k else this
            areas = np.concatenate(area_k) if area_k else np.zeros(0)
        elif not np.array_equal(ann_ids, this):
            raise RuntimeError("instances differ between grid sizes")
    assert ann_ids is not None and image_ids_arr is not None and areas is not None
    iou_arr = {key: np.concatenate(v) for key, v in ious.items()}
    biou_arr = {key: np.concatenate(v) for key, v in bious.items()}
    rows = []
    for k in ks:
        for nn in [None, *(n for n in ns if n <= k * k)]:
            v = iou_arr.get((k, nn), np.zeros(0))
            v = v[~np.isnan(v)]
            paper = PAPER_GRID.get(k) if nn is None else PAPER_DCT.get((k, nn))
            rows.append({
                "k": k, "n": nn, "kind": "grid" if nn is None else "dct",
                "iou": float(v.mean()) if v.size else None,
                "boundary_iou": float(biou_arr[(k, nn)].mean()) if (k, nn) in biou_arr
                and biou_arr[(k, nn)].size else None,
                "paper": paper,
                "by_size": _size_table(iou_arr[(k, nn)], areas) if v.size else None,
            })
    name = Path(annotations).name if isinstance(annotations, str | Path) else "<dict>"
    result: dict[str, Any] = {
        "report": "masks",
        "annotations": {"file": name, "images": len(images), "instances": int(ann_ids.size),
                        "skipped": skipped, "invalid": len(errors)},
        "settings": {"ks": ks, "ns": ns, "method": method, "protocol": protocol,
                     "threshold": 0.5,
                     "boundary": boundary, "dilation_ratio": dilation_ratio,
                     "paste": "detectron2 paste_masks_in_image (bilinear, >= 0.5)"
                     if protocol == "full-image" else
                     "OpenCV resize INTER_LINEAR to the rounded box size (>= 0.5)",
                     "measure": "foreground IoU vs the full-image ground truth"
                     if protocol == "full-image" else
                     "two-class (background, foreground) mean IoU inside the box"},
        "paper": {"source": "DCT-Mask (Shen et al., CVPR 2021), COCO val2017 mean mask IoU",
                  "grid": {str(k): v for k, v in PAPER_GRID.items()},
                  "dct": {f"{k},{n}": v for (k, n), v in PAPER_DCT.items()}},
        "rows": rows,
    }
    result["checks"] = structure_checks(result)
    result["all_pass"] = all(c["pass"] for c in result["checks"] if c["pass"] is not None)
    return MasksQuality(result, ann_ids, image_ids_arr, areas, iou_arr, biou_arr)


def _row(result: dict[str, Any], k: int, n: int | None) -> dict[str, Any] | None:
    for r in result["rows"]:
        if r["k"] == k and r["n"] == n and r["iou"] is not None:
            return r
    return None


def structure_checks(result: dict[str, Any], key: str = "iou") -> list[dict[str, Any]]:
    """The paper's structure as checks ``{name, pass (True/False/None = N/A), text}``:

    1. the grid's IoU rises with K;
    2. the DCT IoU rises with n at the paper's K (128 and 256; every K when neither is
       measured) — at other K a non-monotone sequence is reported as information only;
    3. at fixed n the DCT IoU does not fall with K by more than ``K_TOLERANCE`` (the paper:
       K = 256 equals K = 128 within 0.001 at every n);
    4. at K = 128 and K = 256, n = 100 is within ``CLOSE`` of the 28 x 28 grid;
    5. at K = 128 and K = 256, n = 300 is within ``CLOSE`` of the 64 x 64 grid.
    """
    ks = result["settings"]["ks"]
    ns = result["settings"]["ns"]
    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool | None, text: str) -> None:
        checks.append({"name": name, "pass": ok, "text": text})

    grid = [(k, _row(result, k, None)) for k in ks]
    grid = [(k, r[key]) for k, r in grid if r is not None]
    if len(grid) >= 2:
        ok = all(b[1] > a[1] for a, b in itertools.pairwise(grid))
        add("grid-rises-with-k", ok, "grid IoU rises with K: "
            + " < ".join(f"{k}: {v:.4f}" for k, v in grid))
    else:
        add("grid-rises-with-k", None, "grid IoU rises with K: needs two K")
    paper_ks = [k for k in ks if k in (128, 256)] or ks
    bad = []
    for k in ks:
        seq = [(n, _row(result, k, n)) for n in ns]
        seq = [(n, r[key]) for n, r in seq if r is not None]
        drops = [f"n={a[0]}→{b[0]}: {a[1]:.4f}→{b[1]:.4f}"
                 for a, b in itertools.pairwise(seq) if not b[1] > a[1]]
        if k in paper_ks:
            bad += [f"K={k} {d}" for d in drops]
        elif drops:
            checks.append({"name": f"k{k}-with-n", "pass": None, "info": True,
                           "text": f"K={k} is not monotone in n ({'; '.join(drops)}): at a "
                                   "small K truncation smooths the grid's staircase, and as "
                                   "n → K*K the IoU returns to the grid's (not a paper claim)"})
    add("dct-rises-with-n", not bad if len(ns) >= 2 else None,
        f"DCT IoU rises with n at K={','.join(map(str, paper_ks))}"
        + (f" (fails: {'; '.join(bad)})" if bad else ""))
    bad = []
    for n in ns:
        seq = [(k, _row(result, k, n)) for k in ks]
        seq = [(k, r[key]) for k, r in seq if r is not None]
        bad += [f"n={n} K={a[0]}→{b[0]}: {a[1]:.4f}→{b[1]:.4f}"
                for a, b in itertools.pairwise(seq) if b[1] < a[1] - K_TOLERANCE]
    add("dct-holds-with-k", not bad if len(ks) >= 2 else None,
        f"DCT IoU does not fall with K at fixed n (tolerance {K_TOLERANCE})"
        + (f" (fails: {'; '.join(bad)})" if bad else ""))
    for n, g in ((100, 28), (300, 64)):
        base = _row(result, g, None)
        for k in (128, 256):
            r = _row(result, k, n)
            name = f"k{k}-n{n}-vs-grid{g}"
            if base is None or r is None:
                if k in ks:
                    add(name, None, f"K={k} n={n} within {CLOSE} of the {g}x{g} grid: "
                        f"needs grid {g} and n={n}")
                continue
            diff = r[key] - base[key]
            add(name, abs(diff) <= CLOSE, f"K={k} n={n} within {CLOSE} of the {g}x{g} grid: "
                f"{r[key]:.4f} vs {base[key]:.4f} ({diff:+.4f})")
    return checks


def _cell(v: float | None, paper: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" + (f" ({paper:.3f})" if paper is not None else "")


def render_masks_table(result: dict[str, Any]) -> str:
    """Plain-text report of :func:`masks_quality`: IoU table (paper in parentheses), boundary
    IoU table, per-size table, then the PASS/FAIL lines."""
    s, a = result["settings"], result["annotations"]
    skipped = ", ".join(f"{c} {r}" for r, c in a["skipped"].items()) or "none"
    lines = [f"freqdata quality masks — {a['file']}: {a['instances']} instances in "
             f"{a['images']} images (skipped: {skipped}; invalid entries: {a['invalid']}), "
             f"method {s['method']}",
             ("mean mask IoU, ground truth (full image) vs reconstruction pasted into the box "
              if s.get("protocol", "full-image") == "full-image" else
              "mean two-class IoU inside the box, DCT-Mask's evaluate_iou.py protocol ")
             + "(paper: DCT-Mask, COCO val2017)"]

    def block(key: str) -> list[str]:
        head = f"{'K':>5}  {'grid (no DCT)':<16}" + "".join(f"{'n=' + str(n):<16}"
                                                          for n in s["ns"])
        out = [head]
        for k in s["ks"]:
            cells = []
            for nn in [None, *s["ns"]]:
                r = _row(result, k, nn)
                v = None if r is None else r[key]
                cells.append(_cell(v, None if r is None or key != "iou" else r["paper"]))
            out.append(f"{k:>5}  " + "".join(f"{c:<16}" for c in cells))
        return out

    lines += block("iou")
    if s["boundary"]:
        lines += ["", f"mean boundary IoU (Cheng et al. 2021, dilation ratio "
                      f"{s['dilation_ratio']}; the paper reports none)"]
        lines += block("boundary_iou")
    sized = [r for r in result["rows"] if r["by_size"] is not None]
    if sized:
        counts = ", ".join(f"{name} {sized[0]['by_size'][name]['count']}"
                           for name, _, _ in SIZE_CLASSES)
        lines += ["", f"mean IoU by COCO size class (instances: {counts})",
                  f"{'config':<16}{'small':>8}{'medium':>8}{'large':>8}{'all':>8}"]
        for r in sized:
            if r["paper"] is None and r["n"] is not None:
                continue
            label = f"K={r['k']} " + ("grid" if r["n"] is None else f"n={r['n']}")
            vals = [r["by_size"][nm]["iou"] for nm, _, _ in SIZE_CLASSES] + [r["iou"]]
            lines.append(f"{label:<16}" + "".join(f"{'-' if v is None else f'{v:.4f}':>8}"
                                                  for v in vals))
    lines.append("")
    for c in result["checks"]:
        tag = "PASS" if c["pass"] else "FAIL"
        if c["pass"] is None:
            tag = "INFO" if c.get("info") else "N/A "
        lines.append(f"{tag} {c['text']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- drawing helpers


def _font(size: int = 13) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _pick_instances(q: MasksQuality, k: int, n: int, dataset: dict[str, Any],
                    count: int = 4) -> list[int]:
    """Row indices of ``count`` varied instances: the largest irregular one (under 60 % of
    its box and of its image), the hardest (lowest IoU at (k, n)) of at least 32x32 pixels,
    the largest with several polygon parts, the most elongated box of at least 48x48 pixels.
    """
    by_id = {int(a["id"]): a for a in dataset["annotations"]}
    sizes = {int(im["id"]): int(im["height"]) * int(im["width"]) for im in dataset["images"]}
    iou = q.ious[(k, n)]
    ann = [by_id[int(i)] for i in q.ann_ids]
    box_area = np.array([a["bbox"][2] * a["bbox"][3] for a in ann], dtype=np.float64)
    image_area = np.array([sizes[int(a["image_id"])] for a in ann], dtype=np.float64)
    irregular = (q.areas < 0.6 * box_area) & (q.areas < 0.6 * image_area)
    order_area = list(np.argsort(-q.areas, kind="stable"))
    picks: list[int] = []

    def take(cands: Iterable[int]) -> None:
        for i in cands:
            if int(i) not in picks:
                picks.append(int(i))
                return

    take(i for i in order_area if irregular[i])
    take(i for i in np.argsort(iou, kind="stable") if q.areas[i] >= 32.0**2)
    take(i for i in order_area
         if isinstance(segm := ann[i]["segmentation"], list) and len(segm) > 1)
    aspect = np.array([max(a["bbox"][2] / a["bbox"][3], a["bbox"][3] / a["bbox"][2])
                       if q.areas[i] >= 48.0**2 else 0.0 for i, a in enumerate(ann)])
    take(np.argsort(-aspect, kind="stable"))
    take(order_area)
    return picks[:count]


def _panel(rgb: np.ndarray, size: tuple[int, int]) -> Any:
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(rgb)).resize(size, Image.Resampling.NEAREST)


def _binary_rgb(m: np.ndarray) -> np.ndarray:
    """(h, w) bool → (h, w, 3) uint8: white foreground on dark grey."""
    out = np.full((*m.shape, 3), 40, np.uint8)
    out[m] = 255
    return out


def _xor_rgb(truth: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Error image: grey = both, red = ground truth only (missed), blue = extra."""
    out = np.full((*m.shape, 3), 40, np.uint8)
    out[truth & m] = 120
    out[truth & ~m] = (235, 50, 50)
    out[~truth & m] = (60, 140, 255)
    return out


def render_masks_png(
    q: MasksQuality,
    annotations: Annotations,
    path: str | Path,
    *,
    k: int | None = None,
    ns: Sequence[int] = (100, 300),
    images_dir: str | Path | None = None,
    count: int = 4,
) -> Path:
    """A figure of ``count`` varied real instances (:func:`_pick_instances`): per row the
    image crop (when ``images_dir`` holds the JPEG), the ground truth, and for each n the
    reconstruction at K (128 when measured) and its error (XOR: red = missed, blue = extra).
    """
    from PIL import Image, ImageDraw

    dataset = load_coco(annotations)
    s = q.result["settings"]
    k = k or (128 if 128 in s["ks"] else max(s["ks"]))
    ns = [n for n in ns if (k, n) in q.ious] or [n for (kk, n) in q.ious if kk == k and n][:2]
    picks = _pick_instances(q, k, ns[0], dataset, count)
    cats = {int(c["id"]): c.get("name", str(c["id"])) for c in dataset["categories"]}
    images = {int(im["id"]): im for im in dataset["images"]}
    show_image = images_dir is not None
    cols = (["image"] if show_image else []) + ["ground truth"]
    for n in ns:
        cols += [f"n={n} reconstruction", f"n={n} error (XOR)"]
    cell, pad, label_h, head_h = 190, 8, 24, 26
    rows: list[tuple[list[Any], str]] = []  # (panels, caption) per instance
    for i in picks:
        ann_id, image_id = int(q.ann_ids[i]), int(q.image_ids[i])
        sub_inst = load_instances(dataset, k=k, method=s["method"], image_ids=[image_id])
        row = int(np.flatnonzero(sub_inst.ann_ids == ann_id)[0])
        one = sub_inst.select([row])
        h, w = (int(v) for v in one.image_sizes[0])
        truth = full_image_masks(dataset, [ann_id])[0].astype(bool)
        recs = [paste_masks(dct_decode(one.dct_vectors(n, dtype=np.float64), k,
                                       dtype=np.float64), one.boxes_xyxy, (h, w))[0]
                for n in ns]
        x, y, bw, bh = one.boxes[0]
        side = min(max(bw, bh) * 1.3 + 4, max(h, w))  # a square crop around the box
        x0 = int(min(max(0.0, x + bw / 2 - side / 2), max(0.0, w - side)))
        y0 = int(min(max(0.0, y + bh / 2 - side / 2), max(0.0, h - side)))
        x1, y1 = min(w, x0 + math.ceil(side)), min(h, y0 + math.ceil(side))
        scale = cell / max(x1 - x0, y1 - y0)
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        region = (slice(y0, y1), slice(x0, x1))
        t = truth[region]
        panels = []
        if show_image:
            photo = Path(images_dir) / str(images[image_id].get("file_name", ""))  # type: ignore[arg-type]
            rgb = np.zeros((h, w, 3), np.uint8)
            if photo.is_file():
                loaded = np.asarray(Image.open(photo).convert("RGB"))
                if loaded.shape[:2] == (h, w):
                    rgb = loaded
            panels.append(_panel(rgb[region], size))
        panels.append(_panel(_binary_rgb(t), size))
        for m in recs:
            panels += [_panel(_binary_rgb(m[region]), size), _panel(_xor_rgb(t, m[region]), size)]
        ious = [float(mask_iou(m[None], truth[None])[0]) for m in recs]
        rows.append((panels, f"ann {ann_id} ({cats.get(int(one.category_ids[0]), '?')}), "
                     f"image {image_id}, box {bw:.0f}x{bh:.0f}, area {one.areas[0]:.0f} px; "
                     f"K={k}: IoU " + ", ".join(f"n={n} {v:.3f}"
                                                for n, v in zip(ns, ious, strict=True))))
    width = pad + len(cols) * (cell + pad)
    height = head_h + sum(p[0].height + label_h + pad for p, _ in rows) + 30
    fig = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(fig)
    font, small = _font(13), _font(11)
    for j, c in enumerate(cols):
        draw.text((pad + j * (cell + pad), 6), c, fill="black", font=font)
    top = head_h
    for panels, caption in rows:
        for j, p in enumerate(panels):
            fig.paste(p, (pad + j * (cell + pad), top))
        top += panels[0].height
        draw.text((pad, top + 5), caption, fill="black", font=small)
        top += label_h + pad
    draw.text((pad, height - 26), f"method {s['method']}; IoU = foreground IoU on the full "
              "image; error: red = missed (ground truth only), blue = extra (reconstruction "
              "only), grey = both", fill="black", font=small)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.save(out)
    return out


# --------------------------------------------------------------------------- weak labels


def weak_quality(
    annotations: Annotations,
    nus: Sequence[int] = (4, 8, 16, 32, 64),
    *,
    crowd: str = "ignore",
    image_ids: Iterable[int] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    keep_example: bool = True,
) -> dict[str, Any]:
    """Block-wise weak labels against the full labels, per band limit nu_max.

    Label maps: :func:`freqdata.masks.store.category_maps` (background 0, categories 1..K,
    larger instances first, crowd = ignore 255). Per nu_max: ``energy_kept`` (mean and
    minimum over images of :func:`freqdata.masks.energy_kept`), ``miou`` — dataset-level mIoU
    of ``blockwise(label, nu)`` against ``label`` (intersections and unions summed over all
    images, averaged over the classes present in either; ignore pixels left out), the
    standard semantic-segmentation figure — ``miou_image_mean`` (mean over images of
    :func:`freqdata.masks.miou`) and ``pixel_accuracy``. R_ce needs a model's logits and is
    not computed here. Returns a JSON-able dict (``"example"``: the image used by
    :func:`render_weak_png`, when ``keep_example``).
    """
    nus = sorted({int(v) for v in nus})
    if not nus or nus[0] < 0:
        raise UsageError(f"nu_max values must be >= 0, got {nus}")
    clean, errors = validate_annotations(annotations, image_ids)
    mapping = category_mapping(clean)
    c = mapping.num_classes
    nbins = 256
    conf = np.zeros((len(nus), nbins * nbins), dtype=np.int64)
    energies: list[np.ndarray] = []
    per_image = np.zeros((len(nus), len(clean["images"])))
    example: dict[str, Any] | None = None
    best = -1
    total = len(clean["images"])
    for j, (image_id, label) in enumerate(category_maps(clean, crowd=crowd, mapping=mapping)):
        energies.append(np.asarray(energy_kept(label, nus, c)))
        valid = label != IGNORE_INDEX
        t = label[valid].astype(np.int64)
        present = np.unique(label[valid]).size
        for i, nu in enumerate(nus):
            p = blockwise(label, nu)
            per_image[i, j] = miou(p, label)
            conf[i] += np.bincount(t * nbins + p[valid], minlength=nbins * nbins)
        if keep_example and present > best:  # the image with the most classes
            best, example = present, {"image_id": image_id, "label": label}
        if on_progress:
            on_progress(j + 1, total)
    rows = []
    e = np.stack(energies) if energies else np.zeros((0, len(nus)))
    for i, nu in enumerate(nus):
        m = conf[i].reshape(nbins, nbins)  # [target, pred]
        inter = np.diag(m).astype(np.float64)
        area_t, area_p = m.sum(axis=1), m.sum(axis=0)
        present = (area_t + area_p) > 0
        present[IGNORE_INDEX] = False
        union = area_t + area_p - inter
        rows.append({
            "nu_max": nu, "grid": f"{2 * nu + 1}x{2 * nu + 1}",
            "energy_kept": float(e[:, i].mean()) if len(e) else None,
            "energy_kept_min": float(e[:, i].min()) if len(e) else None,
            "miou": float(np.mean(inter[present] / union[present])) if present.any() else None,
            "miou_image_mean": float(per_image[i].mean()) if total else None,
            "pixel_accuracy": float(inter.sum() / max(area_t.sum(), 1)),
        })
    name = Path(annotations).name if isinstance(annotations, str | Path) else "<dict>"
    out: dict[str, Any] = {
        "report": "weak",
        "annotations": {"file": name, "images": total, "invalid": len(errors)},
        "settings": {"nus": nus, "classes": c, "ignore_index": IGNORE_INDEX, "crowd": crowd,
                     "grid": "2*nu_max+1 cells per axis (capped at the image size), majority "
                             "label per cell, nearest up-sampling (freqdata.masks.blockwise)",
                     "band": "square |f_y|, |f_x| <= nu_max cycles per image",
                     "overlap": "crowd first, then instances by decreasing area"},
        "rows": rows,
        "r_ce": "not computed: R_ce(nu_max) needs a trained model's logits "
                "(freqdata.masks.relative_ce_loss_rate); left to the semantic trainer",
    }
    if example is not None:
        out["example"] = {"image_id": int(example["image_id"])}
        out["_example_label"] = example["label"]
    return out


def render_weak_table(result: dict[str, Any]) -> str:
    """Plain-text table of :func:`weak_quality`."""
    a = result["annotations"]
    lines = [f"freqdata quality weak — {a['file']}: {a['images']} images, "
             f"{result['settings']['classes']} classes (background + categories), "
             f"crowd → {result['settings']['crowd']}",
             f"{'nu_max':>6} {'grid':>9} {'energy kept':>12} {'(min)':>8} {'mIoU':>8} "
             f"{'mIoU/img':>9} {'pix acc':>8}"]
    for r in result["rows"]:
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.4f}"
        lines.append(f"{r['nu_max']:>6} {r['grid']:>9} {f(r['energy_kept']):>12} "
                     f"{f(r['energy_kept_min']):>8} {f(r['miou']):>8} "
                     f"{f(r['miou_image_mean']):>9} {f(r['pixel_accuracy']):>8}")
    lines.append("mIoU: block-wise label vs full label over the dataset (an upper bound for "
                 "training on block-wise labels); energy kept: label spectrum in "
                 "|f| <= nu_max, mean over images")
    lines.append(f"R_ce: {result['r_ce']}")
    return "\n".join(lines)


def _palette() -> np.ndarray:
    rng = np.random.default_rng(7)
    pal = rng.integers(40, 256, size=(256, 3), dtype=np.int64).astype(np.uint8)
    pal[0] = (0, 0, 0)
    pal[IGNORE_INDEX] = (255, 255, 255)
    return pal


def render_weak_png(result: dict[str, Any], path: str | Path) -> Path:
    """Line plot of energy kept and mIoU against nu_max (log2 axis), and, when the result
    holds an example image, its full label map beside the block-wise labels per nu_max."""
    from PIL import Image, ImageDraw

    rows = result["rows"]
    nus = [r["nu_max"] for r in rows]
    series = [("energy kept (mean)", "energy_kept", (30, 100, 200)),
              ("mIoU (dataset)", "miou", (210, 60, 40)),
              ("mIoU (mean per image)", "miou_image_mean", (230, 150, 30))]
    pw, ph, left, top, bottom = 620, 360, 70, 40, 50
    label = result.get("_example_label")
    thumbs: list[Image.Image] = []
    if label is not None:
        pal = _palette()
        th = 150
        scale = th / label.shape[0]
        size = (max(1, round(label.shape[1] * scale)), th)
        thumbs.append(Image.fromarray(pal[label]).resize(size, Image.Resampling.NEAREST))
        for nu in nus:
            thumbs.append(Image.fromarray(pal[blockwise(label, nu)]).resize(
                size, Image.Resampling.NEAREST))
    strip_w = sum(t.width + 8 for t in thumbs) + 8
    width = max(pw + left + 190, strip_w)
    height = top + ph + bottom + ((thumbs[0].height + 40) if thumbs else 0)
    fig = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(fig)
    font, small = _font(13), _font(11)
    d.text((left, 10), "block-wise weak labels vs band limit nu_max", fill="black", font=font)
    vals = [r[key] for _, key, _ in series for r in rows if r[key] is not None]
    lo = min(0.5, math.floor(min(vals, default=0.5) * 10) / 10)
    x0, x1, y0, y1 = left, left + pw, top, top + ph
    lx = [math.log2(max(nu, 1)) for nu in nus]
    span = (max(lx) - min(lx)) or 1.0

    def px(v: float) -> float:
        return x0 + 20 + (v - min(lx)) / span * (pw - 40)

    def py(v: float) -> float:
        return y1 - (v - lo) / (1.0 - lo) * ph

    d.rectangle((x0, y0, x1, y1), outline="black")
    steps = round((1.0 - lo) / 0.1)
    for t in range(steps + 1):
        v = lo + t * 0.1
        d.line((x0, py(v), x1, py(v)), fill=(225, 225, 225))
        d.text((x0 - 40, py(v) - 7), f"{v:.1f}", fill="black", font=small)
    for nu, v in zip(nus, lx, strict=True):
        d.line((px(v), y1, px(v), y1 + 5), fill="black")
        d.text((px(v) - 8, y1 + 8), str(nu), fill="black", font=small)
    d.text(((x0 + x1) // 2 - 60, y1 + 26), "nu_max (log scale)", fill="black", font=small)
    for j, (name, key, colour) in enumerate(series):
        pts = [(px(v), py(r[key])) for v, r in zip(lx, rows, strict=True) if r[key] is not None]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=3)
        for x, y in pts:
            d.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour)
        d.line((x1 + 15, y0 + 20 + 22 * j, x1 + 45, y0 + 20 + 22 * j), fill=colour, width=3)
        d.text((x1 + 50, y0 + 13 + 22 * j), name, fill="black", font=small)
    if thumbs:
        ty = y1 + bottom + 10
        d.text((8, ty), f"image {result['example']['image_id']}: full label, then block-wise "
               "labels (white = ignore)", fill="black", font=small)
        x = 8
        for t, name in zip(thumbs, ["full", *(f"nu={nu}" for nu in nus)], strict=True):
            fig.paste(t, (x, ty + 18))
            d.text((x + 2, ty + 20), name, fill="white", font=small)
            x += t.width + 8
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.save(out)
    return out

