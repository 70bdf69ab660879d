"""The reference trainers learn what they should: each must overfit a tiny real subset, the
training images being the evaluation set (issue 17; docs/trainers.md, "Overfit sanity
runs").

* classify: 8 ants/bees images (dctnet-24, 8 x 8 blocks), ResNet-18 → 100% top-1 on them
  in evaluation mode;
* semantic: 8 COCO val images with people (dctnet-24, 64 x 64 px), DeepLabv3+ → person vs
  background mIoU >= 0.8;
* masks, every head (grid, DCT-Mask, PatchDCT): 8 COCO train images on a 128 x 128 canvas,
  oracle boxes without jitter → mask AP >= 0.8. These take minutes on a CPU: marked
  ``slow`` and run only when the mark expression names them (``pytest -m slow
  tests/test_overfit.py``); the default suite runs a short variant (the grid head, 4 images
  on a 64 x 64 canvas, 60 epochs at lr 3e-3, AP >= 0.5).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ANTS_BEES, COCO_VAL, DATA

from freqdata.job import EncodeOptions, encode_images
from freqdata.sources import Sources

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COCO_TRAIN = DATA / "images-seg" / "coco-mini" / "train2017"
ANN_TRAIN = DATA / "coco" / "coco-mini" / "instances_train2017.json"
ANN_VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"


@pytest.fixture
def slow_selected(request):
    """Skip unless ``-m`` names ``slow`` (the default suite runs the short variants)."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("minutes on a CPU: run with pytest -m slow")


def test_classify_overfits_8_images(tmp_path, data_dir):
    from freqdata.trainers.classify import ClassifyConfig, train_classify

    paths, labels = [], []
    for k, cls in enumerate(("ants", "bees")):
        found = sorted((ANTS_BEES / "train" / cls).glob("*.jpg"))[:4]
        paths += [str(p) for p in found]
        labels += [k] * len(found)
    store = tmp_path / "cls.zarr"
    encode_images(Sources(paths, labels, ["ants", "bees"]), store,
                  EncodeOptions("dctnet-24", "pixels", "72:64"))  # fmt: skip
    end = train_classify(ClassifyConfig(
        store=str(store), val_store=str(store), model="resnet18", epochs=30, batch_size=8,
        lr=0.05, weight_decay=0.0, warmup_epochs=1, out=str(tmp_path / "run")))  # fmt: skip
    assert end["final"]["train_top1"] == 1.0
    assert end["final"]["val_top1"] == 1.0  # evaluation mode (running BN statistics)


def test_semantic_overfits_8_images(tmp_path, data_dir):
    from freqdata.masks.store import encode_masks
    from freqdata.trainers.semantic import SemanticConfig, train_semantic

    coco = json.loads(ANN_VAL.read_text())
    person = {a["image_id"] for a in coco["annotations"] if a["category_id"] == 1}
    ims = sorted((im for im in coco["images"] if im["id"] in person), key=lambda im: im["id"])
    ims = ims[:8]
    src = Sources([str(COCO_VAL / im["file_name"]) for im in ims], [0] * 8, ["coco"])
    store, masks = tmp_path / "dct.zarr", tmp_path / "masks.zarr"
    encode_images(src, store, EncodeOptions("dctnet-24", "pixels", "72:64"))
    encode_masks(ANN_VAL, masks, weak=[8], patch=False, image_ids=[im["id"] for im in ims])
    end = train_semantic(SemanticConfig(
        store=str(store), val_store=str(store), masks=str(masks), val_masks=str(masks),
        input="dct", epochs=30, batch_size=4, lr=2e-3, weight_decay=0.0, warmup_epochs=1,
        val_every=10, out=str(tmp_path / "run")))  # fmt: skip
    assert end["final"]["val_miou"] >= 0.8, end["final"]


def _mask_run(tmp_path: Path, head: str, n: int, canvas: int, epochs: int, lr: float) -> dict:
    from freqdata.trainers.masks import MasksConfig, train_masks

    paths = [str(p) for p in sorted(COCO_TRAIN.glob("*.jpg"))[:n]]
    store = tmp_path / "dct.zarr"
    encode_images(Sources(paths, [0] * n, ["coco"]), store,
                  EncodeOptions("dctnet-24", "pixels", f"{canvas}:{canvas}"))  # fmt: skip
    return train_masks(MasksConfig(
        store=str(store), annotations=str(ANN_TRAIN), val_store=str(store),
        val_annotations=str(ANN_TRAIN), head=head, fpn_channels=32, head_dim=64,
        patch_hidden=64, max_instances=None, batch_size=4, epochs=epochs, lr=lr,
        jitter_shift=0.0, jitter_scale=0.0, warmup_epochs=1, eval_every=epochs,
        out=str(tmp_path / "run")))  # fmt: skip


def test_grid_head_learns_4_images_short(tmp_path, data_dir):
    end = _mask_run(tmp_path, "grid", 4, 64, 60, 3e-3)
    assert end["final"]["AP"] >= 0.5, end["final"]


@pytest.mark.slow
@pytest.mark.parametrize("head", ["grid", "dctmask", "patchdct"])
def test_mask_head_overfits_8_images(tmp_path, data_dir, slow_selected, head):
    end = _mask_run(tmp_path, head, 8, 128, 200, 2e-3)
    assert end["final"]["AP"] >= 0.8, end["final"]
