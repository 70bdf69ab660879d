"""The RGB-vs-DCT classification experiment of docs/trainers.md, as one command.

    python -m freqdata.trainers.experiment --data ../shared/data/images-cls/hymenoptera_data \\
        --work /tmp/fd-exp --results docs/results --seeds 0 1 2 --epochs 15

Builds the stores (if missing) under ``--work``, then runs every arm for every seed with
:func:`freqdata.trainers.classify.train_classify` — arms interleaved within a seed, so
that a busy machine slows them alike; interrupted, it picks up where it stopped (finished
runs are kept, the current one resumes from its checkpoint) — and writes, per arm, the
raw per-epoch log records to ``RESULTS/classify-<arm>.json`` and a summary to
``RESULTS/classify-summary.json``.
Each run is the same as ``freqdata train classify`` with the options recorded in its file.

Arms (:data:`ARMS`; the same model, schedule, seeds, sample order, crop windows and flips):

* ``rgb224``: RGB 256 → 240 stored, random 224 crops (4-pixel steps), uint8;
* ``dct448``: dctnet-24, 512 → 480 stored (60x60 blocks), random 56x56-block crops, int16;
* ``dct448-int8``: the same, sent with the int8 transport (half the bytes);
* ``dct224``: dctnet-24, 256 → 240 stored (30x30 blocks), random 28x28-block crops, int16;
* ``dct448-all-gate`` (opt-in): all 192 channels with the dynamic gate (heat map).

Augmented arms (issue 16, opt-in with ``--arms``; RandomResizedCrop + flip, the same boxes
and flips on every arm for a seed, evaluation on the centre 0.875 of the square):

* ``rgb224-aug``: RGB 256 → 256 stored (the centre square), RandomResizedCrop to 224 on
  the device (``--augment standard``);
* ``dct448-aug``: dctnet-24 512 → 512 stored, RandomResizedCrop to 56x56 blocks in the DCT
  domain on the device (``--augment standard --box-step 2``: the RGB arm's boxes, doubled);
* ``dct448-aug48``: the same from a dctnet-48 store, the model reading its dctnet-24
  channels (``--keep-preset dctnet-24``; docs/loader.md, "Stores for training": the
  recommended training store);
* ``dct448-fly``: dctnet-24 encoded on the fly from the JPEGs (``--store`` the image folder,
  ``--geometry resnet``): RandomResizedCrop + flip on the pixels of the whole image, then
  the DCT (DCTNet's training transform); validation 512 → centre 448, also on the fly.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freqdata.job import EncodeOptions, encode_images

from .classify import ClassifyConfig, train_classify
from .rgb import encode_rgb
from .run import hardware

__all__ = ["ARMS", "Arm", "main", "run_experiment", "summarize"]


@dataclass(frozen=True)
class Arm:
    """One arm: its stores (``kind``, ``preset``, ``geometry``), crop and transport."""

    name: str
    description: str
    kind: str  # "dct" | "rgb"
    geometry: str
    crop: int
    preset: str = "dctnet-24"
    transport: str = "int16"
    gate: bool = False
    augment: str = "none"
    box_step: int = 1
    on_the_fly: bool = False  # read the image folders, no store
    keep_preset: str | None = None  # the model's channels of a larger store

    def store_name(self, split: str) -> str:
        tag = "rgb" if self.kind == "rgb" else f"{self.preset}"
        return f"{tag}-{self.geometry.replace(':', 'x')}-{split}.zarr"


ARMS: dict[str, Arm] = {
    a.name: a
    for a in (
        Arm("rgb224", "RGB-224 uint8 (256 -> 240 stored, random 224 crops)", "rgb", "256:240", 224),
        Arm("dct448", "DCT-24 from 448 (512 -> 480 stored, 56x56-block crops), int16", "dct",
            "512:480", 448),
        Arm("dct448-int8", "DCT-24 from 448, int8 transport (matched bytes: 0.5x)", "dct",
            "512:480", 448, transport="int8"),
        Arm("dct224", "DCT-24 from 224 (256 -> 240 stored, 28x28-block crops), int16", "dct",
            "256:240", 224),
        Arm("dct448-all-gate", "DCT-192 (preset all) from 448 with the dynamic channel gate",
            "dct", "512:480", 448, preset="all", gate=True),
        Arm("rgb224-aug", "RGB-224, RandomResizedCrop + flip on the device (256 -> 256 stored)",
            "rgb", "256:256", 224, augment="standard"),
        Arm("dct448-aug", "DCT-24 from 448, RandomResizedCrop + flip in the DCT domain "
            "(512 -> 512 stored)", "dct", "512:512", 448, augment="standard", box_step=2),
        Arm("dct448-aug48", "DCT-24 from 448, RandomResizedCrop + flip in the DCT domain on a "
            "dctnet-48 store (512 -> 512), model reads dctnet-24", "dct", "512:512", 448,
            preset="dctnet-48", augment="standard", box_step=2, keep_preset="dctnet-24"),
        Arm("dct448-fly", "DCT-24 from 448, RandomResizedCrop + flip on the pixels, encoded on "
            "the fly (DCTNet's transform)", "dct", "resnet", 448, augment="standard",
            on_the_fly=True),
    )
}  # fmt: skip
DEFAULT_ARMS = ("rgb224", "dct448", "dct448-int8", "dct224")


def prepare(arm: Arm, data: Path, work: Path, workers: int = 1) -> tuple[Path, Path]:
    """Build (if missing) the arm's training and validation stores; returns their paths (the
    image folders for an on-the-fly arm)."""
    if arm.on_the_fly:
        return data / "train", data / "val"
    paths = []
    for split in ("train", "val"):
        out = work / arm.store_name(split)
        if not (out / "zarr.json").exists():
            if arm.kind == "rgb":
                encode_rgb(data / split, out, arm.geometry, overwrite=True)
            else:
                opts = EncodeOptions(arm.preset, "pixels", arm.geometry, "full")
                encode_images(data / split, out, opts, workers=workers, overwrite=True)
        paths.append(out)
    return paths[0], paths[1]


def command(cfg: ClassifyConfig) -> str:
    """The ``freqdata train classify`` command line equivalent to ``cfg``."""
    parts = ["freqdata", "train", "classify", "--store", cfg.store]
    if cfg.val_store:
        parts += ["--val-store", cfg.val_store]
    parts += ["--model", cfg.model, "--input", cfg.input, "--epochs", str(cfg.epochs),
              "--batch-size", str(cfg.batch_size), "--lr", str(cfg.lr), "--seed", str(cfg.seed),
              "--out", cfg.out]  # fmt: skip
    if cfg.crop is not None:
        parts += ["--crop", str(cfg.crop)]
    if cfg.transport != "int16":
        parts += ["--transport", cfg.transport]
    if cfg.augment != "none":
        parts += ["--augment", cfg.augment]
    if cfg.box_step != 1:
        parts += ["--box-step", str(cfg.box_step)]
    if cfg.keep_preset:
        parts += ["--keep-preset", cfg.keep_preset]
    if not (Path(cfg.store) / "zarr.json").is_file():
        parts += ["--preset", cfg.preset, "--geometry", cfg.geometry]
    if cfg.gate:
        parts += ["--gate", "--gate-lambda", str(cfg.gate_lambda)]
    if cfg.width is not None:
        parts += ["--width", str(cfg.width)]
    if cfg.torch_threads:
        parts += ["--torch-threads", str(cfg.torch_threads)]
    if cfg.resume:
        parts += ["--resume"]
    return shlex.join(parts)


def _mean_std(xs: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(xs),
        "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
        "min": min(xs),
        "max": max(xs),
        "n": len(xs),
    }


def _finished(log_path: Path, epochs: int) -> bool:
    if not log_path.exists():
        return False
    recs = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return any(r.get("event") == "end" and r.get("epochs") == epochs for r in recs)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm: final and best val top-1 (mean, std over seeds), median train samples/s
    (epochs 2.., all seeds), bytes per sample, wall seconds."""
    epochs = [[r for r in run["log"] if r.get("event") == "epoch"] for run in runs]
    final = [e[-1]["val_top1"] for e in epochs if e]
    best = [max(r["val_top1"] for r in e) for e in epochs if e]
    sps = [r["samples_per_s"] for e in epochs for r in e[1:]] or [
        r["samples_per_s"] for e in epochs for r in e
    ]
    return {
        "final_val_top1": _mean_std(final),
        "best_val_top1": _mean_std(best),
        "final_train_loss": _mean_std([e[-1]["train_loss"] for e in epochs if e]),
        "train_samples_per_s_median": statistics.median(sps),
        "val_samples_per_s_median": statistics.median(
            r["val_samples_per_s"] for e in epochs for r in e
        ),
        "bytes_per_sample": epochs[0][0]["bytes_per_sample"],
        "wall_seconds": sum(run["wall_seconds"] for run in runs),
    }


def run_experiment(
    data: Path,
    work: Path,
    results: Path,
    *,
    arms: list[str],
    seeds: list[int],
    epochs: int,
    lr: float = 0.05,
    gate_lambda: float = 0.01,
    workers: int = 1,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Run ``arms`` x ``seeds`` (module docstring); returns the summary written to
    ``results/classify-summary.json``."""
    work.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    stores = {a: prepare(ARMS[a], data, work, workers) for a in arms}
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    for seed in seeds:
        for a in arms:
            arm = ARMS[a]
            train, val = stores[a]
            cfg = ClassifyConfig(
                store=str(train), val_store=str(val), model="resnet18", input=arm.kind,
                gate=arm.gate, gate_lambda=gate_lambda, epochs=epochs, batch_size=32, lr=lr,
                seed=seed, crop=arm.crop, transport=arm.transport,
                out=str(work / "runs" / f"{a}-seed{seed}"), resume=True,
                torch_threads=torch_threads, augment=arm.augment, box_step=arm.box_step,
                preset=arm.preset, geometry=arm.geometry, threads=workers if arm.on_the_fly else 1,
                keep_preset=arm.keep_preset,
            )  # fmt: skip
            log_path = Path(cfg.out) / "log.jsonl"
            if not _finished(log_path, epochs):  # finished runs are kept, others resumed
                train_classify(cfg)
            log = [json.loads(line) for line in log_path.read_text().splitlines()]
            hw = next((r["hardware"] for r in log if "hardware" in r), {})
            for r in log:
                r.pop("hardware", None)
            wall = sum(r["seconds"] for r in log if r.get("event") == "epoch")
            runs[a].append({"seed": seed, "command": command(cfg), "wall_seconds": wall,
                            "hardware": hw, "log": log})  # fmt: skip
            last = [r for r in log if r.get("event") == "epoch"][-1]
            print(f"{a} seed {seed}: val top-1 {last['val_top1']:.3f}, "
                  f"{last['samples_per_s']:.1f} samples/s, {wall:.0f} s", flush=True)  # fmt: skip
            _write_arm(results, a, runs[a], epochs)
    path = results / "classify-summary.json"
    summary: dict[str, Any] = {
        "experiment": "ants/bees (hymenoptera_data), from scratch, compact ResNet-18 (width 32)",
        "arms": {},
    }
    if path.exists():  # runs of other arms (e.g. the gate) are kept
        summary = json.loads(path.read_text())
    for a in arms:
        summary["arms"][a] = {
            "description": ARMS[a].description,
            "epochs": epochs,
            "seeds": seeds,
            "hardware": hardware(),
            **summarize(runs[a]),
        }
    path.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _write_arm(results: Path, arm: str, runs: list[dict[str, Any]], epochs: int) -> None:
    doc = {
        "arm": arm,
        "description": ARMS[arm].description,
        "epochs": epochs,
        "hardware": hardware(),
        "summary": summarize(runs),
        "runs": runs,
    }
    (results / f"classify-{arm}.json").write_text(json.dumps(doc, indent=None) + "\n")


def measure_throughput(
    data: Path,
    work: Path,
    *,
    arms: list[str],
    steps: int = 6,
    repeats: int = 3,
    batch_size: int = 32,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Training and inference samples/s of each arm's whole step (read + crop → device
    transforms → forward/backward/SGD step), arms taken in turn ``repeats`` times so that
    a busy machine affects them alike; per arm the median over rounds and the median of
    its per-round ratio to the first arm (the baseline measured in the same round)."""
    import torch
    import torch.nn.functional as F

    from .data import build_pipeline
    from .registry import create_model

    if torch_threads:
        torch.set_num_threads(torch_threads)
    built = {}
    for a in arms:
        arm = ARMS[a]
        train, _ = prepare(arm, data, work)
        pipe = build_pipeline(arm.kind, train, None, batch_size=batch_size, crop=arm.crop,
                              transport=arm.transport, augment=arm.augment,
                              box_step=arm.box_step, preset=arm.preset,
                              geometry=arm.geometry, keep_preset=arm.keep_preset)  # fmt: skip
        torch.manual_seed(0)
        model = create_model("resnet18", input=arm.kind, num_classes=pipe.num_classes,
                             in_channels=pipe.in_channels if arm.kind == "dct" else None,
                             gate=arm.gate).to(memory_format=torch.channels_last)  # fmt: skip
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        built[a] = (pipe, model, opt)

    def run(a: str, epoch: int, train: bool) -> float:
        pipe, model, opt = built[a]
        model.train(train)
        pipe.train.set_epoch(epoch)
        it = iter(pipe.train)
        n, t0 = 0, 0.0
        for k in range(steps + 1):  # the first step warms up, untimed
            if k == 1:
                t0 = time.perf_counter()
            x, y = pipe.augment_train(next(it))
            x = x.contiguous(memory_format=torch.channels_last)
            if train:
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            else:
                with torch.no_grad():
                    model(x)
            n += len(y) if k else 0
        return n / (time.perf_counter() - t0)

    rows: dict[str, dict[str, list[float]]] = {a: {"train": [], "infer": []} for a in arms}
    for r in range(repeats):
        for a in arms:
            rows[a]["train"].append(run(a, r, True))
            rows[a]["infer"].append(run(a, r, False))
    base = arms[0]
    out: dict[str, Any] = {
        "what": "samples/s of whole training steps (batch read + crop, device transforms, "
        "forward, backward, SGD step) and of inference (no grad), compact ResNet-18",
        "batch_size": batch_size,
        "steps": steps,
        "repeats": repeats,
        "baseline": base,
        "hardware": hardware(),
        "arms": {},
    }
    for a in arms:
        pipe = built[a][0]
        out["arms"][a] = {
            "description": ARMS[a].description,
            "bytes_per_sample": pipe.bytes_per_sample,
            "in_shape": [pipe.in_channels, *pipe.spatial],
            **{f"{kind}_samples_per_s": statistics.median(v) for kind, v in rows[a].items()},
            **{
                f"{kind}_x_{base}": statistics.median(
                    x / b for x, b in zip(v, rows[base][kind], strict=True)
                )
                for kind, v in rows[a].items()
            },
            "raw": rows[a],
        }
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with train/ and val/")
    ap.add_argument("--work", type=Path, required=True, help="stores and run folders")
    ap.add_argument("--results", type=Path, default=Path("docs/results"))
    ap.add_argument("--arms", default=",".join(DEFAULT_ARMS), help="comma-separated")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--gate-lambda", type=float, default=0.01)
    ap.add_argument("--workers", type=int, default=1, help="encoding processes")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument(
        "--throughput",
        type=Path,
        default=None,
        metavar="JSON",
        help="only measure samples/s of the arms (alternating) into JSON",
    )
    a = ap.parse_args(argv)
    if a.throughput is not None:
        res = measure_throughput(a.data, a.work, arms=a.arms.split(","),
                                 torch_threads=a.torch_threads)  # fmt: skip
        a.throughput.write_text(json.dumps(res, indent=1) + "\n")
        print(f"| arm | bytes/sample | train samples/s | x {res['baseline']} | "
              f"inference samples/s | x {res['baseline']} |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for name, s in res["arms"].items():
            print(f"| {name} | {s['bytes_per_sample']:,} | {s['train_samples_per_s']:.1f} | "
                  f"{s['train_x_' + res['baseline']]:.2f} | {s['infer_samples_per_s']:.1f} | "
                  f"{s['infer_x_' + res['baseline']]:.2f} |")  # fmt: skip
        return
    arms = a.arms.split(",")
    summary = run_experiment(
        a.data, a.work, a.results, arms=arms, seeds=a.seeds, epochs=a.epochs,
        lr=a.lr, gate_lambda=a.gate_lambda, workers=a.workers, torch_threads=a.torch_threads,
    )  # fmt: skip
    print("| arm | final val top-1 | best val top-1 | train samples/s | bytes/sample |")
    print("|---|---|---|---|---|")
    for name in arms:
        s = summary["arms"][name]
        f, b = s["final_val_top1"], s["best_val_top1"]
        print(f"| {name} | {f['mean']:.3f} ± {f['std']:.3f} | {b['mean']:.3f} ± {b['std']:.3f} "
              f"| {s['train_samples_per_s_median']:.1f} | {s['bytes_per_sample']:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
