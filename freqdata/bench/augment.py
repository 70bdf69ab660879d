"""``python -m freqdata.bench.augment``: cost and partial-channel error of DCT-domain augmentation.

Three measurements (docs/loader.md, "Augmentation"):

* **time** (:func:`time_augment`): device-side augmentation of one batch (default 256
  ``dctnet-24`` cubes on a ``64 x 85``-block grid, e.g. a store with shorter side 512 and
  no centre crop, resampled to ``56 x 56`` blocks) against the forward + backward pass of
  the DCT ResNet-50 (``create_model("resnet50", input="dct")``) on the augmented batch.
  Rows: RandomResizedCrop + horizontal flip (the standard recipe), + colour jitter,
  RandAugment (2 ops, magnitude 9) on the crops, mixup / cutmix. Synthetic int16 cubes
  (timings do not depend on the values); median of ``repeats`` after one warm-up. The
  model may be timed on a smaller batch (``model_batch``) and scaled linearly to ``batch``
  (the JSON says so) where a full pass would take minutes (a small CPU).
* **error** (:func:`measure_preset_error`): with only a preset's channels, the resized
  crop of the stored channels (unstored ones 0) against the same channels of the resized
  crop of all 192 coefficients, on real JPEGs (coefficient path, whole images), per preset
  and box scale (centred boxes covering ``scale`` of the image area, image aspect kept).
* **agreement** (:func:`measure_pixel_agreement`, ``--agreement``): the DCT-domain crop of
  all-coefficient cubes against the pixel path's own random-resized crop, same boxes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from freqdata.augment import (
    RandAugment,
    RandomResizedCrop,
    adjust_colour,
    cutmix,
    mixup,
    resized_crop,
)
from freqdata.bench.timing import median_seconds
from freqdata.presets import resolve_preset
from freqdata.transforms import channel_info, random_hflip

__all__ = [
    "main",
    "measure_pixel_agreement",
    "measure_preset_error",
    "preset_channels",
    "time_augment",
]

ALL_NAMES = [f"{c}{k}" for c in ("Y", "Cb", "Cr") for k in range(64)]


def preset_channels(preset: str) -> tuple[list[str], list[int]]:
    """A preset's channel names and their indices in the 192-channel ``all`` cube."""
    p = resolve_preset(preset)
    names = [f"Y{k}" for k in p.y] + [f"Cb{k}" for k in p.cb] + [f"Cr{k}" for k in p.cr]
    return names, list(p.y) + [64 + k for k in p.cb] + [128 + k for k in p.cr]


def measure_preset_error(
    files: Sequence[str | Path],
    presets: Sequence[str] = ("dctnet-24",),
    scales: Sequence[float] = (0.08, 0.25, 0.5, 1.0),
    size: tuple[int, int] = (56, 56),
    kernel: str = "triangle",
) -> dict[str, Any]:
    """Partial-channel error of :func:`freqdata.augment.resized_crop`, per preset and scale.

    Per ``(preset, scale)``: ``luma_rel`` / ``chroma_rel`` = RMS error / RMS value of the
    full-information result over the component's stored channels; ``worst_channel`` and
    ``worst_rel`` = the channel with the largest RMS error relative to its std; ``max_abs``
    (coefficient units); ``channel_rel``: that relative error of every channel. float64.
    """
    from freqdata.encode import encode_image

    acc: dict[tuple[str, float], dict[str, list[np.ndarray]]] = {}
    for f in files:
        full = torch.from_numpy(encode_image(f, "all", path="coeff").astype(np.float64))[None]
        hp, wp = 8 * full.shape[2], 8 * full.shape[3]
        for s in scales:
            h, w = max(1, round(hp * s**0.5)), max(1, round(wp * s**0.5))
            box = torch.tensor([[(hp - h) // 2, (wp - w) // 2, h, w]])
            ref = resized_crop(full, ALL_NAMES, box, size, kernel)[0]
            for preset in presets:
                names, idx = preset_channels(preset)
                got = resized_crop(full[:, idx], names, box, size, kernel)[0]
                a = acc.setdefault((preset, s), {"err": [], "ref": []})
                a["err"].append((got - ref[idx]).reshape(len(idx), -1).numpy())
                a["ref"].append(ref[idx].reshape(len(idx), -1).numpy())
    rows = []
    for (preset, s), a in acc.items():
        names, _ = preset_channels(preset)
        info = channel_info(names)
        e, r = np.concatenate(a["err"], 1), np.concatenate(a["ref"], 1)
        rel_c = np.sqrt((e**2).mean(1)) / np.maximum(r.std(1), 1e-12)
        worst = int(np.argmax(rel_c))
        row: dict[str, Any] = {"preset": preset, "scale": s}
        for comp, sel in (("luma", info.component == 0), ("chroma", info.component > 0)):
            row[f"{comp}_rel"] = float(np.sqrt((e[sel] ** 2).sum() / (r[sel] ** 2).sum()))
        row.update(worst_channel=names[worst], worst_rel=float(rel_c[worst]))
        row["max_abs"] = float(np.abs(e).max())
        row["channel_rel"] = {n: float(v) for n, v in zip(names, rel_c, strict=True)}
        rows.append(row)
    return {"files": [str(f) for f in files], "size": list(size), "kernel": kernel, "rows": rows}


def measure_pixel_agreement(
    files: Sequence[str | Path], seeds: Sequence[int] = (0, 1), crop: int = 448
) -> dict[str, Any]:
    """The DCT-domain random-resized crop + flip of whole-image, all-coefficient cubes
    (coefficient path) against the pixel path's own (``encode_image(..., path="pixels",
    geometry=f"{crop}:{crop}", rng=default_rng(seed))``: decode, RRC + flip on pixels, DCT),
    with the same boxes and flips (drawn by :func:`freqdata.pixels.random_resized_crop_params`
    from the same numpy generator). Per ``(file, seed)``: mean absolute difference and RMS
    difference / RMS of the pixel path, for luma and chroma, coefficient units.
    """
    from PIL import Image

    from freqdata.augment import flip
    from freqdata.encode import encode_image
    from freqdata.pixels import random_resized_crop_params

    rows = []
    for f in files:
        cube = torch.from_numpy(encode_image(f, "all", path="coeff").astype(np.float64))[None]
        with Image.open(f) as im:
            width, height = im.size  # upright JPEGs only (no EXIF rotation)
        for seed in seeds:
            rng = np.random.default_rng(seed)
            box = torch.tensor([random_resized_crop_params(width, height, rng)])
            flipped = bool(rng.random() < 0.5)
            ref = encode_image(f, "all", "pixels", geometry=f"{crop}:{crop}",
                               rng=np.random.default_rng(seed)).astype(np.float64)  # fmt: skip
            got = resized_crop(cube, ALL_NAMES, box, (crop // 8, crop // 8))
            got = (flip(got, ALL_NAMES, "h") if flipped else got)[0].numpy()
            row: dict[str, Any] = {"file": str(f), "seed": seed, "box": box[0].tolist()}
            for comp, sl in (("luma", slice(0, 64)), ("chroma", slice(64, 192))):
                e, r = got[sl] - ref[sl], ref[sl]
                row[f"{comp}_mad"] = float(np.abs(e).mean())
                row[f"{comp}_rel"] = float(np.sqrt((e**2).sum() / (r**2).sum()))
            rows.append(row)
    return {"crop": crop, "rows": rows}


def time_augment(
    batch: int = 256,
    preset: str = "dctnet-24",
    grid: tuple[int, int] = (64, 85),
    size: tuple[int, int] = (56, 56),
    repeats: int = 3,
    model_batch: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Seconds per batch of each augmentation row and of ResNet-50 forward + backward."""
    names, _ = preset_channels(preset)
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randint(-300, 300, (batch, len(names), *grid), dtype=torch.int16, generator=gen)
    x = x.to(dev)
    labels = torch.randint(0, 1000, (batch,), generator=gen).to(dev)
    info = channel_info(names)
    odd_u = info.odd_u(dev)
    rrc = RandomResizedCrop(info, size, seed=0)
    ra = RandAugment(info, seed=0)
    cpu_gen = torch.Generator().manual_seed(0)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def standard() -> torch.Tensor:
        y, _ = rrc(x)
        y, _ = random_hflip(y, odd_u, 0.5, None)
        sync()
        return y

    crops = standard()

    def jitter() -> None:
        y = standard()
        f = (torch.rand(3, batch, generator=cpu_gen) * 0.8 + 0.6).to(dev)
        hue = (torch.rand(batch, generator=cpu_gen) * 0.2 - 0.1).to(dev)
        adjust_colour(y, info, f[0], f[1], f[2], hue)
        sync()

    def randaugment() -> None:
        ra(crops)
        sync()

    def mixing() -> None:
        mixup(crops, labels, 1000, 0.2, cpu_gen)
        cutmix(crops, labels, 1000, 1.0, cpu_gen)
        sync()

    rows = {
        "rrc+hflip": median_seconds(standard, repeats),
        "rrc+hflip+colour jitter": median_seconds(jitter, repeats),
        "randaugment (on crops)": median_seconds(randaugment, repeats),
        "mixup+cutmix": median_seconds(mixing, repeats),
    }
    from freqdata.trainers import create_model
    from freqdata.trainers.run import hardware

    mb = model_batch or batch
    net = create_model("resnet50", input="dct", in_channels=len(names), num_classes=1000)
    net = net.to(dev).train()
    xm, lm = crops[:mb].float(), labels[:mb]

    def step() -> None:
        net.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(xm), lm).backward()
        sync()

    model_s = median_seconds(step, repeats) * batch / mb
    return {
        "batch": batch,
        "preset": preset,
        "grid": list(grid),
        "size": list(size),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "model_batch": mb,
        "model_scaled": mb != batch,
        "resnet50_fwd_bwd_s": model_s,
        "rows": [
            {"row": k, "seconds": v, "fraction_of_model": v / model_s} for k, v in rows.items()
        ],
        "hardware": hardware(),
    }


def _size(text: str) -> tuple[int, int]:
    a, b = text.lower().split("x")
    return int(a), int(b)


def main(argv: list[str] | None = None) -> None:
    """Command line: print the tables (and write JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--preset", default="dctnet-24")
    ap.add_argument("--grid", type=_size, default=(64, 85), help="input blocks, HxW")
    ap.add_argument("--size", type=_size, default=(56, 56), help="output blocks, HxW")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model-batch", type=int, default=None,
                    help="time ResNet-50 on this many samples and scale to --batch")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--error", nargs="*", default=None, metavar="JPEG",
                    help="measure the partial-channel error on these JPEGs instead of timing")
    ap.add_argument("--error-presets", default="dctnet-24")
    ap.add_argument("--agreement", nargs="*", default=None, metavar="JPEG",
                    help="compare with the pixel path's own random-resized crop on these JPEGs")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.agreement is not None:
        rep = measure_pixel_agreement(a.agreement, crop=8 * a.size[0])
        print(f"{'file':<40}{'seed':>5}{'luma mad':>10}{'rel':>7}{'chroma mad':>12}{'rel':>7}")
        for r in rep["rows"]:
            print(f"{Path(r['file']).name[:39]:<40}{r['seed']:>5}{r['luma_mad']:>10.3f}"
                  f"{r['luma_rel']:>7.3f}{r['chroma_mad']:>12.3f}{r['chroma_rel']:>7.3f}")
    elif a.error is not None:
        rep = measure_preset_error(a.error, a.error_presets.split(","), size=a.size)
        print(f"{len(rep['files'])} images, output {a.size[0]}x{a.size[1]} blocks, {rep['kernel']}")
        print(f"{'preset':<12}{'scale':>7}{'luma rel':>10}{'chroma rel':>12}"
              f"{'worst channel':>16}{'max abs':>9}")
        for r in rep["rows"]:
            print(f"{r['preset']:<12}{r['scale']:>7.2f}{r['luma_rel']:>10.4f}"
                  f"{r['chroma_rel']:>12.4f}{r['worst_channel']:>9} {r['worst_rel']:>6.3f}"
                  f"{r['max_abs']:>9.1f}")
    else:
        rep = time_augment(a.batch, a.preset, a.grid, a.size, a.repeats, a.model_batch, a.device)
        scaled = f" (timed on {rep['model_batch']}, scaled)" if rep["model_scaled"] else ""
        print(f"{rep['hardware']['cpu']}, {rep['threads']} threads, {rep['device']}; "
              f"batch {rep['batch']} {rep['preset']} {a.grid[0]}x{a.grid[1]} -> "
              f"{a.size[0]}x{a.size[1]} blocks")
        print(f"ResNet-50 forward+backward: {rep['resnet50_fwd_bwd_s']:.2f} s{scaled}")
        for r in rep["rows"]:
            print(f"  {r['row']:<26}{r['seconds']:>8.3f} s  {100 * r['fraction_of_model']:>6.1f} %")
    if a.json is not None:
        a.json.write_text(json.dumps(rep, indent=2) + "\n")


if __name__ == "__main__":
    main()
