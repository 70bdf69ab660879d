"""Training throughput, RGB vs DCT: images/s of full training steps (forward, loss, backward,
optimizer step) of one network fed by each input pipeline.

``python -m freqdata.bench.train_throughput --rgb-store R --dct-store D --images DIR --json F``
(``freqdata gpu-check`` runs it; docs/gpu.md). Arms, each the same network (``--model``,
default ResNet-50 with 1000 classes) with bf16 autocast and channels_last on CUDA:

* ``rgb-store``: an RGB store (``freqdata train rgb-store``, e.g. 224 x 224) through the
  trainer's RGB loader (:func:`freqdata.trainers.data.build_pipeline`, ``input="rgb"``);
* ``dct-store``: a DCT store (e.g. dctnet-24 56 x 56 blocks) through
  :func:`freqdata.make_loader` and :class:`freqdata.transforms.DeviceAugment` (the same
  pipeline as ``freqdata train classify --input dct``);
* ``rgb-dali`` / ``dct-dali``: the JPEGs of ``--images`` decoded by DALI (nvJPEG ``mixed``
  on a GPU, the CPU pipeline otherwise; :mod:`freqdata.dali`): RGB crops, and cubes from
  :class:`freqdata.dali.DaliCubeLoader`;
* ``rgb-synthetic`` / ``dct-synthetic``: one batch already on the device, repeated — the
  network alone, the ceiling the data paths are measured against.

Method: ``warmup`` steps (cuDNN autotuning, allocator, loader start), then ``steps`` timed
steps with a device synchronize at both ends; images/s = ``steps * batch_size`` over the
wall time. Loaders restart every epoch (a small store is read many times). Labels are the
stores' (or 0 for unlabelled images): this measures speed, not learning.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from freqdata.errors import UsageError

__all__ = ["ARMS", "measure_arm", "run_train_throughput"]

ARMS = ("rgb-synthetic", "rgb-store", "rgb-dali", "dct-synthetic", "dct-store", "dct-dali")
# ImageNet RGB statistics for the DALI RGB arm (uint8 scale); only the speed matters
_RGB_MEAN = (123.675, 116.28, 103.53)
_RGB_STD = (58.395, 57.12, 57.375)

Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_arm(
    batches: Batches,
    model: torch.nn.Module,
    device: torch.device,
    *,
    warmup: int,
    steps: int,
    amp: bool,
    channels_last: bool,
) -> dict[str, Any]:
    """Time ``steps`` training steps of ``model`` on the batches of ``batches()`` (called
    again whenever an epoch ends) after ``warmup`` steps. Each batch: ``x`` ``(B, C, h, w)``
    float32 and labels ``(B,)`` int64 on ``device``. Returns ``{"images_per_s", "steps",
    "images", "seconds", "batch_size", "input_shape"}``."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()
    it = batches()
    shape: list[int] = []
    images = 0
    t0 = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            t0, images = time.perf_counter(), 0
        try:
            x, y = next(it)
        except StopIteration:
            it = batches()
            x, y = next(it)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        images += len(y)
        shape = list(x.shape[1:])
    _sync(device)
    dt = time.perf_counter() - t0
    return {"images_per_s": images / max(dt, 1e-9), "steps": steps, "images": images,
            "seconds": dt, "batch_size": int(images / max(steps, 1)), "input_shape": shape}


def _store_batches(input: str, store: Path, batch_size: int, device: torch.device,
                   threads: int) -> Batches:  # fmt: skip
    from freqdata.trainers.data import build_pipeline

    pipe = build_pipeline(input, store, batch_size=batch_size, device=device, threads=threads)
    if len(pipe.train) < 1:
        raise UsageError(f"{store} holds fewer samples than one batch of {batch_size}")
    epoch = [0]

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pipe.train.set_epoch(epoch[0])
        epoch[0] += 1
        for b in pipe.train:
            x, y = pipe.augment_train(b)
            yield x, y.clamp(min=0)

    return batches


def _dali_batches(
    kind: str, files: list[str], batch_size: int, device: torch.device, geometry: str,
    threads: int, stats: tuple[Any, Any] | None,
) -> Batches:  # fmt: skip
    from freqdata import dali

    dev = "gpu" if device.type == "cuda" else "cpu"
    if kind == "dct":
        mean, std = stats if stats is not None else (None, None)
        loader = dali.DaliCubeLoader(files, "dctnet-24", geometry, device=dev,
                                     batch_size=batch_size, num_threads=threads, mean=mean,
                                     std=std)  # fmt: skip

        def cubes() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for batch in loader:
                yield batch["cubes"], batch["labels"].clamp(min=0)

        return cubes
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    pipe = dali.build_pipeline(files, None, geometry, device=dev, batch_size=batch_size,
                               num_threads=threads)  # fmt: skip
    it = DALIGenericIterator([pipe], ["rgb", "label"], reader_name="Reader", auto_reset=True,
                             last_batch_policy=LastBatchPolicy.PARTIAL)
    mean = torch.tensor(_RGB_MEAN, device=device).view(1, 3, 1, 1)
    inv_std = 1.0 / torch.tensor(_RGB_STD, device=device).view(1, 3, 1, 1)

    def rgb() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for out in it:
            x = out[0]["rgb"].to(device, non_blocking=True).permute(0, 3, 1, 2)  # NHWC → NCHW
            y = out[0]["label"].reshape(-1).to(device=device, dtype=torch.int64)
            yield (x.float() - mean) * inv_std, y.clamp(min=0)

    return rgb


def _synthetic(shape: tuple[int, ...], batch_size: int, device: torch.device) -> Batches:
    g = torch.Generator().manual_seed(0)
    x = torch.randn((batch_size, *shape), generator=g).to(device)
    y = torch.randint(0, 10, (batch_size,), generator=g).to(device)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield x, y

    return batches


def run_train_throughput(
    rgb_store: str | Path,
    dct_store: str | Path,
    images: list[str] | None = None,
    *,
    model: str = "resnet50",
    width: int | None = None,
    num_classes: int = 1000,
    batch_size: int = 128,
    warmup: int = 5,
    steps: int = 20,
    device: str = "auto",
    threads: int = 4,
    rgb_geometry: str = "256:224",
    dct_geometry: str = "resnet",
    arms: tuple[str, ...] = ARMS,
) -> dict[str, Any]:
    """Measure every arm of ``arms`` (module docstring); an arm that cannot run (DALI not
    installed, no images) is recorded with its ``error`` instead of stopping the others.

    ``images``: the JPEGs for the DALI arms (decoded with ``rgb_geometry`` /
    ``dct_geometry``, which should be the stores' geometries). Returns ``{"arms": {name:
    {images_per_s, ...} | {"error": str}}, "ratios": {"dct_over_rgb_store",
    "dct_over_rgb_dali", "dct_over_rgb_synthetic"}, "settings", "device", "amp",
    "channels_last"}``."""
    from freqdata.store import open_store
    from freqdata.trainers.registry import create_model
    from freqdata.trainers.rgb import RGBStore
    from freqdata.trainers.run import pick_device

    unknown = [a for a in arms if a not in ARMS]
    if unknown or batch_size < 1 or steps < 1 or warmup < 0:
        raise UsageError(f"arms must be among {', '.join(ARMS)} (got {unknown}); "
                         "batch_size, steps >= 1, warmup >= 0")  # fmt: skip
    dev = pick_device(device)
    amp = dev.type == "cuda"
    channels_last = True
    dct = open_store(dct_store)
    rgb = RGBStore(rgb_store)
    c = len(dct.channel_names)
    grid = dct.parts[0].grid
    dct_shape = (c, *grid) if grid is not None else None
    rgb_shape = (3, *rgb.grid)
    result: dict[str, Any] = {"arms": {}, "device": str(dev), "amp": amp,
                              "channels_last": channels_last,
                              "settings": {"model": model, "width": width,
                                           "num_classes": num_classes,
                                           "batch_size": batch_size, "warmup": warmup,
                                           "steps": steps, "threads": threads,
                                           "rgb_store": str(rgb_store),
                                           "dct_store": str(dct_store),
                                           "rgb_geometry": rgb_geometry,
                                           "dct_geometry": dct_geometry,
                                           "dali_images": len(images or [])}}  # fmt: skip
    kw: dict[str, Any] = {} if width is None else {"width": width}
    for arm in arms:
        kind, source = arm.split("-")
        try:
            if source == "synthetic":
                shape = dct_shape if kind == "dct" else rgb_shape
                if shape is None:
                    raise UsageError(f"{dct_store} holds whole images (ragged)")
                batches = _synthetic(shape, batch_size, dev)
            elif source == "store":
                batches = _store_batches(kind, Path(dct_store if kind == "dct" else rgb_store),
                                         batch_size, dev, threads)  # fmt: skip
            else:
                if not images:
                    raise UsageError("no JPEGs given for the DALI arms")
                geometry = dct_geometry if kind == "dct" else rgb_geometry
                batches = _dali_batches(kind, images, batch_size, dev, geometry, threads,
                                        (dct.mean, dct.std) if kind == "dct" else None)  # fmt: skip
            torch.manual_seed(0)
            net = create_model(model, input=kind, in_channels=c if kind == "dct" else None,
                               num_classes=num_classes, **kw).to(dev)  # fmt: skip
            net = net.to(memory_format=torch.channels_last)
            result["arms"][arm] = measure_arm(batches, net, dev, warmup=warmup, steps=steps,
                                              amp=amp, channels_last=channels_last)  # fmt: skip
            del net, batches
        except (ImportError, RuntimeError, ValueError, OSError) as e:
            result["arms"][arm] = {"error": f"{type(e).__name__}: {e}"}
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    speed = {a: r.get("images_per_s") for a, r in result["arms"].items()}
    result["ratios"] = {
        f"dct_over_rgb_{s}": (speed[f"dct-{s}"] / speed[f"rgb-{s}"]
                              if speed.get(f"dct-{s}") and speed.get(f"rgb-{s}") else None)
        for s in ("store", "dali", "synthetic")
    }  # fmt: skip
    return result


def render_markdown(result: dict[str, Any]) -> str:
    """The arms as a markdown table (images/s, input shape, batch)."""
    s = result["settings"]
    lines = [f"Training throughput, {s['model']} (bf16 autocast: {result['amp']}, "
             f"channels_last: {result['channels_last']}, device {result['device']}, batch "
             f"{s['batch_size']}, {s['steps']} timed steps after {s['warmup']})", "",
             "| arm | images/s | input (C, h, w) |", "|---|---:|---|"]  # fmt: skip
    for arm, r in result["arms"].items():
        if "error" in r:
            lines.append(f"| {arm} | not run | {r['error'][:120]} |")
        else:
            shape = "x".join(str(v) for v in r["input_shape"])
            lines.append(f"| {arm} | {r['images_per_s']:.1f} | {shape} |")
    for k, v in result["ratios"].items():
        lines.append(f"\n{k.replace('_', ' ')}: {'n/a' if v is None else f'{v:.2f}x'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rgb-store", required=True)
    ap.add_argument("--dct-store", required=True)
    ap.add_argument("--images", help="folder or list file of JPEGs for the DALI arms")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--width", type=int)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rgb-geometry", default="256:224")
    ap.add_argument("--dct-geometry", default="resnet")
    ap.add_argument("--json", dest="json_path")
    a = ap.parse_args(argv)
    files = None
    if a.images:
        from freqdata.sources import list_sources

        files = list(list_sources(a.images).paths)
    result = run_train_throughput(
        a.rgb_store, a.dct_store, files, model=a.model, width=a.width,
        batch_size=a.batch_size, warmup=a.warmup, steps=a.steps, device=a.device,
        threads=a.threads, rgb_geometry=a.rgb_geometry, dct_geometry=a.dct_geometry,
    )  # fmt: skip
    print(render_markdown(result))
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
