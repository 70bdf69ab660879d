"""The grid vs DCT-Mask vs PatchDCT experiment of docs/mask-heads.md, as one command.

    python -m freqdata.trainers.mask_experiment --data ../shared/data --work /tmp/fd-masks \\
        --results docs/results --epochs 12 --torch-threads 1

Builds (if missing) the DCT stores of the COCO-mini images at the canvas geometry under
``--work``, then trains every head in turn with :func:`freqdata.trainers.masks.train_masks`
(same backbone, data, box jitter, schedule and seed; finished runs are kept, an
interrupted one resumes from its checkpoint) and writes per head the configuration, the
equivalent ``freqdata train masks`` command and the per-epoch log records to
``RESULTS/masks-<head>.json``, and ``RESULTS/masks-summary.json`` with the final figures
of every head beside the **box baseline** (every mask = its whole box, what an oracle box
gives for free) and, per head, the final model's figures on its own **training** images
(ground-truth boxes, all instances: how well the head fits the masks it was trained on).
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch

from freqdata.job import EncodeOptions, encode_images

from .experiment import _finished
from .mask_data import MaskData
from .mask_eval import MaskEvaluator, paste
from .mask_heads import HEADS
from .masks import MaskModel, MasksConfig, _evaluate, train_masks
from .run import pick_device

__all__ = ["box_baseline", "command", "evaluate_run", "main", "render_examples"]

COCO = ("coco/coco-mini/instances_{}2017.json", "images-seg/coco-mini/{}2017")
_FLAGS = ("head", "input", "epochs", "batch_size", "lr", "optimizer", "seed", "fine_size",
          "max_instances", "eval_every", "torch_threads", "out")  # fmt: skip


def command(cfg: MasksConfig) -> str:
    """The ``freqdata train masks`` command line equivalent to ``cfg`` (defaults omitted
    except the ones listed in ``_FLAGS``)."""
    parts = ["freqdata", "train", "masks", "--store", cfg.store, "--annotations", cfg.annotations]
    if cfg.val_store:
        parts += ["--val-store", cfg.val_store, "--val-annotations", str(cfg.val_annotations)]
    for k in _FLAGS:
        v = getattr(cfg, k)
        if v is not None:
            parts += ["--" + k.replace("_", "-"), str(v)]
    return shlex.join(parts)


def box_baseline(data: MaskData) -> dict[str, float]:
    """Oracle-box figures of the trivial prediction "the mask is the whole box"."""
    ev = MaskEvaluator(data.coco)
    for s in range(0, len(data), 8):
        b = data.batch(list(range(s, min(s + 8, len(data)))))
        pasted = paste(np.ones((b.boxes.shape[0], 28, 28)), b.boxes.numpy(), (data.size,) * 2)
        for i, iid in enumerate(b.image_ids.tolist()):
            rows = (b.batch_index == i).numpy()
            ev.add(iid, pasted[rows], b.masks.numpy()[rows], b.ann_ids.numpy()[rows],
                   b.categories.numpy()[rows])  # fmt: skip
    return ev.summary()


def evaluate_run(run: Path, store: Path, annotations: str, device: str = "cpu") -> dict[str, float]:
    """The oracle-box figures of the model in ``run/last.pt`` on ``store`` + ``annotations``
    (every instance, ground-truth boxes; normalized with the run's training store)."""
    cfg = torch.load(run / "last.pt", map_location="cpu", weights_only=False)["config"]
    data = MaskData(store, annotations, stats_store=cfg["store"])
    dev = pick_device(device)
    return _evaluate(_load_run(run, data).to(dev), data, dev, False, 4, None)


def _load_run(run: Path, data: MaskData) -> MaskModel:
    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    c = MasksConfig(**ckpt["config"])
    model = MaskModel(c.head, c.input, data.in_channels, data.size, model=c.model,
                      width=c.width, fpn_channels=c.fpn_channels, head_dim=c.head_dim,
                      fine_size=c.fine_size, patch_hidden=c.patch_hidden)  # fmt: skip
    model.load_state_dict(ckpt["model"])
    return model.eval()


def render_examples(
    runs: dict[str, Path], data: MaskData, out: Path, *, count: int = 8, panel: int = 96
) -> Path:
    """PNG: one row per validation instance (the ``count`` largest that fill less than 70 %
    of their box, one per image), one
    column per run plus the ground truth; each panel is the pasted mask around the box
    (box + 10 %), white = agrees with the truth, red = extra, blue = missed."""
    from PIL import Image, ImageDraw

    def shaped(a: dict[str, Any]) -> bool:  # large enough, and not box-like
        return a["area"] >= 1500 and a["area"] < 0.7 * a["bbox"][2] * a["bbox"][3]

    best = {p: max((a for a in anns if shaped(a)), key=lambda a: a["area"], default=None)
            for p, anns in enumerate(data.anns)}  # fmt: skip
    picks = sorted((p for p in best if best[p]), key=lambda p: -best[p]["area"])[:count]
    b = data.batch(picks)
    first = [int(np.flatnonzero(b.ann_ids.numpy() == best[p]["id"])[0]) for p in picks]
    boxes = b.boxes[first]
    truth = b.masks.numpy()[first].astype(bool)
    masks = {"ground truth": truth}
    with torch.no_grad():
        for name, run in runs.items():
            model = _load_run(run, data)
            soft = model.head.decode(model(b.images, boxes, torch.arange(len(picks))))
            masks[name] = paste(soft.numpy(), boxes.numpy(), (data.size, data.size))
    img = Image.new("RGB", (panel * len(masks), 16 + panel * len(picks)), "gray")
    draw = ImageDraw.Draw(img)
    for j, name in enumerate(masks):
        draw.text((j * panel + 3, 2), name, fill="white")
    for i in range(len(picks)):
        x0, y0, x1, y1 = boxes[i].tolist()
        pw, ph = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
        ys = np.clip(np.linspace(y0 - ph, y1 + ph, panel).astype(int), 0, data.size - 1)
        xs = np.clip(np.linspace(x0 - pw, x1 + pw, panel).astype(int), 0, data.size - 1)
        t = truth[i][np.ix_(ys, xs)]
        for j, m in enumerate(masks.values()):
            p = m[i][np.ix_(ys, xs)]
            rgb = np.zeros((panel, panel, 3), np.uint8)
            rgb[p & t] = 255
            rgb[p & ~t] = (230, 40, 40)
            rgb[~p & t] = (40, 90, 230)
            img.paste(Image.fromarray(rgb), (j * panel, 16 + i * panel))
    img.save(out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the shared data root")
    ap.add_argument("--work", type=Path, required=True, help="stores and runs")
    ap.add_argument("--results", type=Path, default=Path("docs/results"))
    ap.add_argument("--heads", default=",".join(HEADS))
    ap.add_argument("--geometry", default="320:320")
    ap.add_argument("--preset", default="dctnet-24")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--fine-size", type=int, default=28)
    ap.add_argument("--max-instances", type=int, default=24)
    ap.add_argument("--eval-every", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-threads", type=int, default=1)
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    a.results.mkdir(parents=True, exist_ok=True)
    stores = {}
    for split in ("train", "val"):
        out = a.work / f"{a.preset}-{a.geometry.replace(':', 'x')}-{split}.zarr"
        if not (out / "zarr.json").exists():
            encode_images(a.data / COCO[1].format(split), out,
                          EncodeOptions(a.preset, "pixels", a.geometry, "full"), workers=1,
                          overwrite=True)  # fmt: skip
        stores[split] = out
    ann = {s: str(a.data / COCO[0].format(s)) for s in ("train", "val")}
    summary: dict[str, Any] = {"box_baseline": box_baseline(MaskData(stores["val"], ann["val"]))}
    for head in a.heads.split(","):
        cfg = MasksConfig(
            store=str(stores["train"]), annotations=ann["train"], val_store=str(stores["val"]),
            val_annotations=ann["val"], head=head, epochs=a.epochs, fine_size=a.fine_size,
            max_instances=a.max_instances, eval_every=a.eval_every, seed=a.seed,
            torch_threads=a.torch_threads, out=str(a.work / "runs" / head),
        )  # fmt: skip
        log_path = Path(cfg.out) / "log.jsonl"
        if not _finished(log_path, a.epochs):
            cfg.resume = (Path(cfg.out) / "last.pt").exists()
            train_masks(cfg, on_log=lambda r: print(json.dumps(r)[:300], flush=True))
            cfg.resume = False
        log = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
        (a.results / f"masks-{head}.json").write_text(json.dumps({
            "head": head, "command": command(cfg), "config": cfg.to_dict(),
            "hardware": log[0]["hardware"], "log": log,
        }, indent=1) + "\n")  # fmt: skip
        summary[head] = next(r for r in log if r.get("event") == "end")["final"]
        summary[f"{head}_val"] = evaluate_run(Path(cfg.out), stores["val"], ann["val"])
        summary[f"{head}_train_fit"] = evaluate_run(Path(cfg.out), stores["train"], ann["train"])
    (a.results / "masks-summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    render_examples({h: a.work / "runs" / h for h in a.heads.split(",")},
                    MaskData(stores["val"], ann["val"], stats_store=stores["train"]),
                    a.results / "masks-examples.png")  # fmt: skip


if __name__ == "__main__":
    main()
