"""TrainAugment: the recipes on a real store's batches equal the composed exact ops."""

from __future__ import annotations

import pytest
import torch
from conftest import ANTS_BEES
from test_loader import _sources

from freqdata import open_store
from freqdata.augment import RandomResizedCrop, resized_crop
from freqdata.augment.pipeline import TrainAugment, centre_boxes, image_sizes
from freqdata.errors import UsageError
from freqdata.job import EncodeOptions, encode_images
from freqdata.loader import StoreDataset
from freqdata.transforms import random_hflip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store_batch(tmp_path_factory, data_dir):
    files = sorted((ANTS_BEES / "val").rglob("*.jpg"))[:6] + sorted(ANTS_BEES.rglob("bees/*"))[:2]
    out = tmp_path_factory.mktemp("aug") / "s.zarr"
    srcs = _sources([p.relative_to(ANTS_BEES).as_posix() for p in files])
    encode_images(srcs, out, EncodeOptions(path="pixels", geometry="80:72"))
    store = open_store(out)
    return store, StoreDataset(store).read_batch(range(len(store)))


def test_standard_recipe_is_crop_flip_normalize(store_batch):
    store, batch = store_batch
    aug = TrainAugment(store, size=(4, 5), seed=3)
    x, y = aug(batch)
    assert x.shape == (8, 24, 4, 5) and x.dtype == torch.float32
    assert torch.equal(y, batch["labels"])
    raw = batch["cubes"].float()
    crops, _ = RandomResizedCrop(store.channel_names, (4, 5), seed=3)(raw)
    g = torch.Generator().manual_seed(3)
    crops, _ = random_hflip(crops, aug.odd_u, 0.5, g)
    mean = torch.as_tensor(store.mean, dtype=torch.float32)[:, None, None]
    std = torch.as_tensor(store.std, dtype=torch.float32)[:, None, None]
    torch.testing.assert_close(x, (crops - mean) / std, rtol=1e-5, atol=1e-5)
    x2, _ = TrainAugment(store, size=(4, 5), seed=3)(batch)
    assert torch.equal(x, x2)  # seeded


def test_eval_is_the_centre_box_and_randaugment_mixup_run(store_batch):
    store, batch = store_batch
    x, _ = TrainAugment(store, size=(7, 7), train=False)(batch)
    box = centre_boxes(torch.tensor([[72, 72]] * 8), 0.875)
    assert box[0].tolist() == [4, 4, 63, 63]
    ref = resized_crop(batch["cubes"].float(), store.channel_names, box, (7, 7))
    torch.testing.assert_close(x, TrainAugment(store, size=(7, 7)).normalize(ref))
    aug = TrainAugment(store, size=(4, 4), recipe="randaugment", mix="cutmix", num_classes=2)
    x, t = aug(batch)
    assert x.shape == (8, 24, 4, 4) and t.shape == (8, 2)
    torch.testing.assert_close(t.sum(1), torch.ones(8))
    with pytest.raises(UsageError):
        TrainAugment(store, mix="mixup")
    with pytest.raises(UsageError):
        TrainAugment(store, recipe="autoaugment")


def test_image_sizes_of_a_ragged_crop():
    batch = {
        "labels": torch.zeros(3),
        "shapes": torch.tensor([[40, 50], [10, 60], [30, 5]]),
        "origins": torch.tensor([[2, 3], [0, 8], [0, 0]]),
    }
    sizes = image_sizes(batch, (32, 32))
    assert sizes.tolist() == [[256, 256], [80, 256], [240, 40]]
    assert image_sizes({"labels": torch.zeros(2)}, (4, 6)).tolist() == [[32, 48]] * 2
