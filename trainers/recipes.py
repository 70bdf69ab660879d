"""Named paper recipes: one command from a dataset folder to a trained model.

``freqdata train recipe NAME --data ROOT --work DIR`` (cli/train_recipe.py) encodes the
dataset into stores under ``DIR/stores`` (an existing store is resumed, a finished one
reused) and trains with the recipe's configuration into ``DIR/run``. ``--smoke`` runs the
same recipe on a few images of the test data (``$FREQDATA_DATA``) at tiny sizes for 2 steps:
what the test suite checks. docs/trainers.md, "Paper recipes", lists what each follows
and where it departs from the paper.

Dataset layouts (``ROOT``): ``imagenet``: ``ROOT/train/<class>/*.JPEG`` and
``ROOT/val/<class>/*.JPEG``; ``coco``: ``ROOT/train2017``, ``ROOT/val2017`` and
``ROOT/annotations/instances_{train,val}2017.json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freqdata.errors import UsageError

__all__ = ["RECIPES", "Recipe", "dataset_paths", "recipe_config", "run_recipe"]


@dataclass(frozen=True)
class Recipe:
    """One named configuration: the trainer, its dataset and store geometries, the trainer
    options (``config``) and what ``--smoke`` changes (``smoke``, ``smoke_geometry``)."""

    name: str
    paper: str
    trainer: str  # classify | masks | semantic
    dataset: str  # imagenet | coco
    train_geometry: str
    val_geometry: str
    config: dict[str, Any]
    smoke: dict[str, Any]
    smoke_geometry: tuple[str, str]
    smoke_images: int = 4  # per split (imagenet: per class)
    weak: tuple[int, ...] = field(default_factory=tuple)  # mask store: block-wise grids


_MASK_SMOKE = {"model": "resnet50", "width": 8, "fpn_channels": 16, "head_dim": 16,
               "patch_hidden": 16, "batch_size": 2, "epochs": 1, "max_instances": 4,
               "smoke": True}  # fmt: skip
_MASKS = {"model": "resnet50", "fpn_channels": 256, "head_dim": 256, "epochs": 12,
          "batch_size": 16, "optimizer": "sgd", "lr": 0.02, "momentum": 0.9,
          "weight_decay": 1e-4, "warmup_epochs": 0.25, "max_instances": 100}  # fmt: skip

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(
        name="dctnet-resnet50-imagenet",
        paper="Xu et al., Learning in the Frequency Domain (CVPR 2020): ResNet-50, DCT-24",
        trainer="classify", dataset="imagenet",
        train_geometry="512:480", val_geometry="resnet",
        config={"model": "resnet50", "input": "dct", "crop": 448, "epochs": 90,
                "batch_size": 256, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                "weight_decay": 1e-4, "label_smoothing": 0.1, "warmup_epochs": 5.0,
                "threads": 8},
        smoke={"width": 8, "crop": 128, "batch_size": 2, "epochs": 1, "threads": 1,
               "smoke": True},
        smoke_geometry=("144:136", "144:128"), smoke_images=2,
    ),
    Recipe(
        name="dctmask-coco",
        paper="Shen et al., DCT-Mask (CVPR 2021): 300 coefficients of a 128 x 128 mask",
        trainer="masks", dataset="coco", train_geometry="640:640", val_geometry="640:640",
        config={**_MASKS, "head": "dctmask"}, smoke={**_MASK_SMOKE, "head": "dctmask"},
        smoke_geometry=("128:128", "128:128"),
    ),
    Recipe(
        name="patchdct-coco",
        paper="Wen et al., PatchDCT (ICLR 2023): 8 x 8 patches of a 112 x 112 mask",
        trainer="masks", dataset="coco", train_geometry="640:640", val_geometry="640:640",
        config={**_MASKS, "head": "patchdct", "patch_hidden": 1024, "fine_size": 42},
        smoke={**_MASK_SMOKE, "head": "patchdct", "fine_size": 28},
        smoke_geometry=("128:128", "128:128"),
    ),
    Recipe(
        name="deeplab-blockwise-coco",
        paper="DeepLabv3+ (Chen et al., ECCV 2018) trained on block-wise labels (nu_max 16)",
        trainer="semantic", dataset="coco", train_geometry="544:512", val_geometry="544:512",
        config={"input": "dct", "classes": "all", "labels": "blockwise", "nu_max": 16,
                "crop": 448, "epochs": 30, "batch_size": 16, "optimizer": "sgd", "lr": 0.01,
                "momentum": 0.9, "weight_decay": 1e-4, "warmup_epochs": 1.0},
        smoke={"crop": 64, "nu_max": 4, "batch_size": 2, "epochs": 1, "width": 8,
               "smoke": True},
        smoke_geometry=("72:64", "72:64"), weak=(8,),
    ),
)}  # fmt: skip


@dataclass(frozen=True)
class DatasetPaths:
    """Where a dataset's images and annotations are (``annotations`` None for ImageNet)."""

    train: Path
    val: Path
    train_annotations: Path | None = None
    val_annotations: Path | None = None


def dataset_paths(dataset: str, root: str | Path, *, smoke: bool = False) -> DatasetPaths:
    """The layout of ``dataset`` under ``root`` (module docstring); ``smoke``: ``root`` is
    the test data folder (ImageNet → ants/bees class folders, COCO → coco-mini)."""
    root = Path(root)
    if dataset == "imagenet":
        base = root / "images-cls" / "hymenoptera_data" if smoke else root
        p = DatasetPaths(base / "train", base / "val")
    elif dataset == "coco":
        if smoke:
            img, ann = root / "images-seg" / "coco-mini", root / "coco" / "coco-mini"
        else:
            img, ann = root, root / "annotations"
        p = DatasetPaths(img / "train2017", img / "val2017", ann / "instances_train2017.json",
                         ann / "instances_val2017.json")  # fmt: skip
    else:
        raise UsageError(f"unknown dataset {dataset!r}")
    for q in (p.train, p.val, p.train_annotations, p.val_annotations):
        if q is not None and not q.exists():
            raise UsageError(f"{q} does not exist ({dataset} layout under {root}: "
                             "see freqdata.trainers.recipes)")  # fmt: skip
    return p


def _sources(folder: Path, limit: int | None, per_class: bool) -> Any:
    from freqdata.sources import Sources, list_sources

    src = list_sources(folder)
    if limit is None:
        return src
    keep: list[int] = []
    for label in sorted(set(src.labels)) if per_class else [None]:
        idx = [i for i, v in enumerate(src.labels) if label is None or v == label]
        keep += idx[:limit]
    return Sources([src.paths[i] for i in keep], [src.labels[i] for i in keep],
                   list(src.class_names))  # fmt: skip


def _store(src: Any, out: Path, geometry: str, input: str, workers: int) -> Path:
    """Encode ``src`` into ``out`` (resumed when it exists; a finished store is kept)."""
    from freqdata.job import EncodeOptions, encode_images
    from freqdata.store.rgb import encode_rgb

    resume = out.exists()
    if input == "rgb":
        encode_rgb(src, out, geometry, resume=resume)
    else:
        encode_images(src, out, EncodeOptions("dctnet-24", "pixels", geometry),
                      workers=workers, resume=resume)  # fmt: skip
    return out


def prepare_stores(
    recipe: Recipe, paths: DatasetPaths, work: Path, *, smoke: bool = False, workers: int = 0
) -> dict[str, Path]:
    """Encode the image stores (and, for semantic recipes, the mask stores) of ``recipe``
    under ``work/stores``; returns their paths (``train``, ``val``, ``train_masks``,
    ``val_masks``)."""
    from freqdata.masks.store import encode_masks

    input = recipe.config.get("input", "dct")
    geo = recipe.smoke_geometry if smoke else (recipe.train_geometry, recipe.val_geometry)
    limit = recipe.smoke_images if smoke else None
    root = work / "stores"
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for split, folder, g in (("train", paths.train, geo[0]), ("val", paths.val, geo[1])):
        src = _sources(folder, limit, per_class=recipe.dataset == "imagenet")
        out[split] = _store(src, root / f"{split}.zarr", g, input, workers)
        ann = paths.train_annotations if split == "train" else paths.val_annotations
        if recipe.weak and ann is not None:
            masks = root / f"{split}-masks.zarr"
            if not masks.exists():
                ids = None
                if smoke:
                    ids = [int(Path(p).stem) for p in src.paths]
                encode_masks(ann, masks, weak=list(recipe.weak), patch=False,
                             image_ids=ids)  # fmt: skip
            out[f"{split}_masks"] = masks
    return out


def recipe_config(
    name: str, stores: dict[str, Path], paths: DatasetPaths, out: str | Path, *,
    smoke: bool = False, overrides: dict[str, Any] | None = None,
) -> Any:  # fmt: skip
    """The trainer configuration of recipe ``name`` on ``stores`` (``prepare_stores``):
    a ``ClassifyConfig``, ``MasksConfig`` or ``SemanticConfig``."""
    r = _recipe(name)
    kw = {**r.config, **(r.smoke if smoke else {}), **(overrides or {}), "out": str(out)}
    if r.trainer == "classify":
        from .classify import ClassifyConfig

        return ClassifyConfig(store=str(stores["train"]), val_store=str(stores["val"]), **kw)
    if r.trainer == "masks":
        from .masks import MasksConfig

        return MasksConfig(store=str(stores["train"]), annotations=str(paths.train_annotations),
                           val_store=str(stores["val"]),
                           val_annotations=str(paths.val_annotations), **kw)  # fmt: skip
    from .semantic import SemanticConfig

    return SemanticConfig(store=str(stores["train"]), val_store=str(stores["val"]),
                          masks=str(stores["train_masks"]), val_masks=str(stores["val_masks"]),
                          **kw)  # fmt: skip


def _recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def run_recipe(
    name: str,
    work: str | Path,
    *,
    data: str | Path | None = None,
    smoke: bool = False,
    workers: int = 0,
    overrides: dict[str, Any] | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Encode the stores and train recipe ``name``; returns the trainer's ``end`` record.

    ``data``: the dataset root (module docstring); with ``smoke`` the test data folder
    (default ``$FREQDATA_DATA``). ``overrides``: trainer options replacing the recipe's
    (e.g. ``{"device": "cuda", "resume": True}``). The run goes to ``work/run``."""
    r = _recipe(name)
    if data is None:
        if not smoke:
            raise UsageError("give the dataset folder (--data)")
        data = os.environ.get("FREQDATA_DATA", Path(__file__).resolve().parents[2] /
                              "shared" / "data")  # fmt: skip
    work = Path(work)
    paths = dataset_paths(r.dataset, data, smoke=smoke)
    stores = prepare_stores(r, paths, work, smoke=smoke, workers=workers)
    cfg = recipe_config(name, stores, paths, work / "run", smoke=smoke, overrides=overrides)
    if r.trainer == "classify":
        from .classify import train_classify as train
    elif r.trainer == "masks":
        from .masks import train_masks as train  # type: ignore[assignment]
    else:
        from .semantic import train_semantic as train  # type: ignore[assignment]
    return train(cfg, on_log=on_log, on_step=on_step)
