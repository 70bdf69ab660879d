"""Mask-encoding benchmark: COCO polygons → DCT-Mask vectors, per core, against baselines.

:func:`run_masks_bench` measures, in one run and on the same instances (docs/benchmarks.md):

CPU rows (one core: numpy's BLAS limited to one thread, torch to one intra-op thread):

* ``pycocotools-box`` — baseline: pycocotools ``frPyObjects`` + ``merge`` + ``decode`` of
  the polygons already transformed into box coordinates, at K x K (rasterization alone);
* ``scipy-dctn`` — baseline: a full ``scipy.fft.dctn(norm="ortho")`` per K x K mask, float64,
  then the zigzag gather (the transform as a straightforward implementation does it);
* ``naive-box-encode`` — anchor: per instance, detectron2's ``rasterize_polygons_within_box``
  steps (shift/scale, pycocotools at K x K) followed by ``scipy-dctn``;
* ``freqdata-dct`` — :func:`freqdata.masks.dct_encode` alone on the rasterized masks;
* ``freqdata-box-dense`` — :func:`freqdata.masks.load_instances` (``method="box"``), decode
  of the K x K masks, :func:`freqdata.masks.dct_encode` (the dense path);
* ``freqdata-box-encode`` — **the target row**: :func:`freqdata.masks.load_instances`
  (``method="box"``) + ``MaskInstances.dct_vectors`` (DCT straight from the RLEs,
  :func:`freqdata.masks.dct_encode_rle`), i.e. annotation dict → ``(M, n)`` vectors.
  Target: >= 20,000 masks/s on one core (issue 15);
* ``freqdata-crop-encode`` — the same with ``method="crop"`` (full-image decode + ROIAlign).

Torch rows (on ``device``: CUDA when available, else CPU with one thread):

* ``torch-dct-encode`` — :func:`freqdata.masks.dct_encode_torch` on a ``(B, K, K)`` float32
  batch already on the device;
* ``torch-targets`` — :func:`freqdata.masks.torch_targets` for B boxes (the ground-truth
  boxes, jittered copies to fill the batch) over the instances' full-image uint8 masks on
  the device (``mask_index``). GPU target: >= 100k masks/s.

The annotation JSON is parsed once before timing (an encode parses it once per file). A row's
figure is the median over ``repeats`` passes (rows interleaved within a pass, GC off);
``best_masks_per_s`` (the fastest pass) is recorded too, since a shared machine inflates
medians. ``cpu_over_wall`` well below 1 means the process was preempted.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import scipy.fft

from freqdata.bench.busy import OtherLoad
from freqdata.bench.decode import hardware_info, single_threaded_blas
from freqdata.dct import zigzag
from freqdata.masks.coco import Annotations, _valid_parts, load_coco, load_instances
from freqdata.masks.dctmask import dct_encode

__all__ = ["TARGET_CPU_MASKS_PER_S", "TARGET_GPU_MASKS_PER_S", "render_table", "run_masks_bench"]

TARGET_CPU_MASKS_PER_S = 20_000.0
TARGET_GPU_MASKS_PER_S = 100_000.0
TARGET_ROW = "freqdata-box-encode"


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call, GC collected before and off during."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        t1, c1 = time.perf_counter(), time.process_time()
        return t1 - t0, c1 - c0
    finally:
        if was:
            gc.enable()


def _polygon_instances(dataset: dict[str, Any], k: int) -> tuple[list, list]:
    """(raw valid parts + bbox per polygon instance, parts already in box coordinates)."""
    raw, boxed = [], []
    for a in sorted(dataset["annotations"], key=lambda a: (a["image_id"], a["id"])):
        segm = a.get("segmentation")
        x, y, w, h = (float(v) for v in a["bbox"])
        if a.get("iscrowd", 0) or not isinstance(segm, list) or w < 1 or h < 1:
            continue
        parts = _valid_parts(segm)
        if not parts:
            continue
        raw.append((parts, (x, y, w, h)))
        q = []
        for p in parts:
            t = p.copy()
            t[0::2] = (t[0::2] - x) * (k / w)
            t[1::2] = (t[1::2] - y) * (k / h)
            q.append(t)
        boxed.append(q)
    return raw, boxed


def _cpu_rows(dataset: dict[str, Any], k: int, n: int) -> tuple[dict[str, Callable], int]:
    raw, boxed = _polygon_instances(dataset, k)
    masks = load_instances(dataset, k=k, method="box").masks
    zz = zigzag(k)[:n]

    def pycocotools_box() -> object:
        polys = [p for parts in boxed for p in parts]
        rles = mask_utils.frPyObjects(polys, k, k)
        merged, i = [], 0
        for parts in boxed:
            g = rles[i : i + len(parts)]
            merged.append(g[0] if len(g) == 1 else mask_utils.merge(g))
            i += len(parts)
        return mask_utils.decode(merged)

    def scipy_dctn() -> object:
        return [scipy.fft.dctn(m.astype(np.float64), norm="ortho").ravel()[zz] for m in masks]

    def naive() -> object:
        out = []
        for parts, (x, y, w, h) in raw:
            polys = []
            for p in parts:
                t = p.copy()
                t[0::2] = (t[0::2] - x) * (k / max(w, 0.1))
                t[1::2] = (t[1::2] - y) * (k / max(h, 0.1))
                polys.append(t)
            m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, k, k)))
            out.append(scipy.fft.dctn(m.astype(np.float64), norm="ortho").ravel()[zz])
        return out

    rows: dict[str, Callable[[], object]] = {
        "pycocotools-box": pycocotools_box,
        "scipy-dctn": scipy_dctn,
        "naive-box-encode": naive,
        "freqdata-dct": lambda: dct_encode(masks, n),
        "freqdata-box-dense": lambda: dct_encode(
            load_instances(dataset, k=k, method="box").masks, n),
        TARGET_ROW: lambda: load_instances(dataset, k=k, method="box").dct_vectors(n),
        "freqdata-crop-encode": lambda: load_instances(
            dataset, k=k, method="crop").dct_vectors(n),
    }
    return rows, len(masks)


def _torch_rows(
    dataset: dict[str, Any], k: int, n: int, device: str | None, batch: int, repeats: int
) -> dict[str, Any]:
    import torch

    from freqdata.masks.coco import full_image_masks
    from freqdata.masks.torch_ops import dct_encode_torch, torch_targets

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    try:
        inst = load_instances(dataset, k=k, method="box")
        reps = -(-batch // len(inst))
        x = torch.from_numpy(np.tile(inst.masks, (reps, 1, 1))[:batch]).to(dev, torch.float32)
        full = full_image_masks(dataset, inst.ann_ids)
        hmax = max(f.shape[0] for f in full)
        wmax = max(f.shape[1] for f in full)
        padded = np.zeros((len(full), hmax, wmax), np.uint8)
        for i, f in enumerate(full):
            padded[i, : f.shape[0], : f.shape[1]] = f
        g = torch.from_numpy(padded).to(dev)
        rng = np.random.default_rng(0)
        idx = np.arange(batch) % len(inst)
        xyxy = inst.boxes_xyxy[idx]
        jitter = rng.normal(0.0, 0.05, (batch, 4)) * np.tile(inst.boxes[idx, 2:], 2)
        jitter[: len(inst)] = 0.0  # the first copy is the ground-truth box itself
        boxes = torch.from_numpy(xyxy + jitter).to(dev, torch.float32)
        index = torch.from_numpy(idx).to(dev)

        def sync() -> None:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        rows = {
            "torch-dct-encode": lambda: dct_encode_torch(x, n),
            "torch-targets": lambda: torch_targets(g, boxes, k, n, mask_index=index),
        }
        out: dict[str, Any] = {}
        for name, fn in rows.items():
            fn()
            sync()  # warm-up: kernels, caches, basis upload
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                sync()
                times.append(time.perf_counter() - t0)
            t = statistics.median(times)
            out[name] = {"masks": batch, "seconds": t, "masks_per_s": batch / t,
                         "us_per_mask": t / batch * 1e6, "device": str(dev),
                         "torch_threads": torch.get_num_threads()}
        gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
        return {"rows": out, "device": str(dev), "gpu": gpu, "torch": torch.__version__}
    finally:
        torch.set_num_threads(threads)


def run_masks_bench(
    annotations: Annotations,
    *,
    k: int = 128,
    n: int = 300,
    repeats: int = 3,
    device: str | None = None,
    torch_batch: int = 8192,
    include_torch: bool = True,
    print_table: bool = True,
) -> dict[str, Any]:
    """Benchmark mask encoding on a COCO annotation file (or dict); returns a JSON-able dict.

    ``rows``: per row ``masks``, ``seconds`` (median pass), ``masks_per_s`` (one core for
    CPU rows), ``us_per_mask``, ``best_masks_per_s``, ``cpu_over_wall`` (CPU rows);
    ``ratios``: speed of the target row over each baseline; ``targets``: PASS/FAIL of
    >= 20,000 masks/s/core (CPU) and, when the torch rows ran on a GPU, >= 100k masks/s.
    ``torch_batch``: masks per torch call.
    """
    dataset = load_coco(annotations)
    rows, count = _cpu_rows(dataset, k, n)
    meter = OtherLoad()
    walls: dict[str, list[float]] = {name: [] for name in rows}
    cpus: dict[str, list[float]] = {name: [] for name in rows}
    with single_threaded_blas() as blas:
        # warm-up (lazy imports, basis caches) single-threaded too: a multi-threaded BLAS call
        # leaves OpenBLAS workers spinning into the timed passes
        for fn in rows.values():
            fn()
        for _ in range(repeats):
            for name, fn in rows.items():
                wall, cpu = _timed(fn)
                walls[name].append(wall)
                cpus[name].append(cpu)
    results: dict[str, Any] = {}
    for name in rows:
        t = statistics.median(walls[name])
        results[name] = {"masks": count, "seconds": t, "masks_per_s": count / t,
                         "us_per_mask": t / count * 1e6,
                         "best_masks_per_s": count / min(walls[name]),
                         "device": "cpu (1 core)",
                         "cpu_over_wall": round(sum(cpus[name]) / sum(walls[name]), 3)}
    target_speed = results[TARGET_ROW]["masks_per_s"]
    ratios = {f"{TARGET_ROW}/{name}": round(target_speed / r["masks_per_s"], 3)
              for name, r in results.items() if name != TARGET_ROW}
    targets = [{"name": "cpu-box-encode", "row": TARGET_ROW, "value": target_speed,
                "limit": TARGET_CPU_MASKS_PER_S, "pass": target_speed >= TARGET_CPU_MASKS_PER_S,
                "text": f"{TARGET_ROW} >= {TARGET_CPU_MASKS_PER_S:.0f} masks/s/core"}]
    torch_info: dict[str, Any] | None = None
    if include_torch:
        try:
            torch_info = _torch_rows(dataset, k, n, device, torch_batch, max(repeats, 3))
        except ImportError:
            torch_info = None
    if torch_info is not None:
        results.update(torch_info["rows"])
        if torch_info["gpu"]:
            for name in torch_info["rows"]:
                v = results[name]["masks_per_s"]
                targets.append({"name": f"gpu-{name}", "row": name, "value": v,
                                "limit": TARGET_GPU_MASKS_PER_S,
                                "pass": v >= TARGET_GPU_MASKS_PER_S,
                                "text": f"{name} >= {TARGET_GPU_MASKS_PER_S:.0f} masks/s (GPU)"})
    hw = hardware_info()
    hw["gpu"] = torch_info["gpu"] if torch_info else None
    hw["other_processes_cpu_fraction"] = meter.fraction()
    result = {
        "benchmark": "masks",
        "settings": {"k": k, "n": n, "repeats": repeats, "torch_batch": torch_batch,
                     "instances": count, "blas": blas},
        "hardware": hw,
        "torch": None if torch_info is None else {"device": torch_info["device"],
                                                   "version": torch_info["torch"]},
        "rows": results,
        "ratios": ratios,
        "targets": targets,
        "all_targets_pass": all(t["pass"] for t in targets),
    }
    if print_table:
        print(render_table(result))
    return result


def render_table(result: dict[str, Any]) -> str:
    """Plain-text table of a :func:`run_masks_bench` result, then the target lines."""
    s = result["settings"]
    hw = result["hardware"]
    lines = [
        f"freqdata bench masks — {s['instances']} COCO instances, K={s['k']}, n={s['n']}, "
        f"median of {s['repeats']} passes",
        f"{hw['cpu_model']} ({hw['logical_cpus']} logical CPUs)"
        + (f", GPU {hw['gpu']}" if hw.get("gpu") else ""),
        f"{'row':<22} {'device':<14} {'us/mask':>10} {'masks/s':>12} {'best/s':>10} "
        f"{'target x':>9}",
    ]
    target = result["rows"][TARGET_ROW]["masks_per_s"]
    for name, r in result["rows"].items():
        rel = f"{target / r['masks_per_s']:.2f}" if r["device"].startswith("cpu (") else "-"
        best = f"{r['best_masks_per_s']:.0f}" if "best_masks_per_s" in r else "-"
        lines.append(f"{name:<22} {r['device']:<14} {r['us_per_mask']:>10.2f} "
                     f"{r['masks_per_s']:>12.0f} {best:>10} {rel:>9}")
    lines.append("target x = speed of freqdata-box-encode / the row (CPU rows, one core)")
    for t in result["targets"]:
        tag = "PASS" if t["pass"] else "FAIL"
        lines.append(f"{tag} {t['text']}: {t['value']:.0f}")
    return "\n".join(lines)
