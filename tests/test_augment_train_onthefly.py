"""The on-the-fly reference pipeline (:mod:`freqdata.augment.onthefly`) on real ants/bees
JPEGs: evaluation batches equal a pixel-path store's batches read by ``make_loader``;
training batches are the pixel path's random-resized crop + flip of each input with its
per-sample generator, reproducible, redrawn every epoch, the same with worker processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ANTS_BEES

from freqdata import encode_image, make_loader
from freqdata.augment.onthefly import JpegDataset, make_jpeg_loader
from freqdata.job import EncodeOptions, encode_images
from freqdata.sources import Sources
from freqdata.transforms import DeviceAugment

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GEOMETRY = "72:64"  # 8 x 8 blocks


@pytest.fixture(scope="module")
def sources(data_dir) -> Sources:
    paths, labels = [], []
    for k, cls in enumerate(("ants", "bees")):
        found = sorted((ANTS_BEES / "train" / cls).glob("*.jpg"))[:3]
        paths += [str(p) for p in found]
        labels += [k] * len(found)
    return Sources(paths, labels, ["ants", "bees"])


def _batches(loader) -> list[dict[str, torch.Tensor]]:
    return [{k: v.clone() for k, v in b.items()} for b in loader]


def test_evaluation_batches_equal_the_store_path(sources, tmp_path):
    store = tmp_path / "s.zarr"
    encode_images(sources, store, EncodeOptions("dctnet-24", "pixels", GEOMETRY), workers=0)
    ref = _batches(make_loader(store, batch_size=4, shuffle=False, threads=0, num_workers=0))
    got = _batches(make_jpeg_loader(sources, batch_size=4, geometry=GEOMETRY, train=False,
                                    shuffle=False))  # fmt: skip
    assert len(got) == len(ref) == 2
    for g, r in zip(got, ref, strict=True):
        assert set(g) == {"cubes", "labels", "indices"} and g["cubes"].dtype == torch.int16
        for k in g:
            assert torch.equal(g[k], r[k]), k


def test_training_batches_are_the_pixel_paths_random_crops(sources):
    ds = JpegDataset(sources, geometry=GEOMETRY)
    batch = ds.read_batch([4, 0, 2], seed=123)
    evaluation = JpegDataset(sources, geometry=GEOMETRY, train=False).read_batch([4, 0, 2])
    for j, row in enumerate((4, 0, 2)):
        want = encode_image(sources.paths[row], "dctnet-24", "pixels", GEOMETRY,
                            rng=np.random.default_rng([123, j]))  # fmt: skip
        assert np.array_equal(batch["cubes"][j].numpy(), want)
    assert not torch.equal(batch["cubes"], evaluation["cubes"])  # random boxes, not the centre
    assert batch["labels"].tolist() == [1, 0, 0]


def test_training_order_and_draws_reproducible_per_epoch_and_worker_count(sources):
    kw = dict(batch_size=3, geometry=GEOMETRY, seed=7, drop_last=True)
    a = make_jpeg_loader(sources, **kw)
    e0 = _batches(a)
    assert all(torch.equal(x["cubes"], y["cubes"]) for x, y in zip(e0, _batches(a), strict=True))
    a.set_epoch(1)
    e1 = _batches(a)
    assert not all(torch.equal(x["cubes"], y["cubes"]) for x, y in zip(e0, e1, strict=True))
    w = make_jpeg_loader(sources, num_workers=1, **kw)
    w.set_epoch(1)
    for x, y in zip(e1, _batches(w), strict=True):
        assert torch.equal(x["cubes"], y["cubes"]) and torch.equal(x["indices"], y["indices"])


def test_device_augment_takes_the_dataset_as_its_store(sources):
    ds = JpegDataset(sources, geometry=GEOMETRY, train=False)
    batch = ds.read_batch([0, 5])
    x, y = DeviceAugment(ds, train=False)(batch)
    assert x.shape == (2, 24, 8, 8) and x.dtype == torch.float32 and y.tolist() == [0, 1]
    mean = torch.tensor(ds.mean)[:, None, None]
    std = torch.tensor(ds.std)[:, None, None]
    ref = (batch["cubes"].double() - mean) / std
    assert torch.allclose(x.double(), ref, atol=1e-4)
