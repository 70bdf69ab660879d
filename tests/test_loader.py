"""The store loader: bulk reads, deterministic distributed order, workers, ragged crops."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import zarr
from conftest import ANTS_BEES, DATA
from torch.utils.data import DataLoader, DistributedSampler

from freqdata import loader as L
from freqdata import open_store
from freqdata.errors import StoreError, UsageError
from freqdata.job import EncodeOptions, encode_images
from freqdata.shards import ShardReader
from freqdata.sources import Sources
from freqdata.store.rgb import RGBStore, encode_rgb
from freqdata.trainers.rgb import make_rgb_loader
from freqdata.transport import Int8Transport

# 4:2:0 (odd and even sizes), plus small 4:4:4 files: a ragged store with mixed subsampling
RAGGED_FILES = [
    "train/ants/175998972.jpg",
    "train/ants/trap-jaw-ant-insect-bg.jpg",
    "train/ants/kurokusa.jpg",
    "train/ants/army-ants-red-picture.jpg",
    "train/ants/Ant_1.jpg",
    "train/ants/swiss-army-ant.jpg",
    "train/ants/ant photos.jpg",
    "train/ants/Nepenthes_rafflesiana_ant.jpg",  # 4:4:0: vertical factor 2 only
]


def _sources(files: list[str]) -> Sources:
    paths = [str(ANTS_BEES / f) for f in files]
    return Sources(paths, [int("/bees/" in p) for p in paths], ["ants", "bees"])


@pytest.fixture(scope="module")
def fixed_path(tmp_path_factory, data_dir):
    """150 real images (ants then bees), 8x8 blocks: shards of 64, 64 and a partial 22."""
    files = sorted(
        p.relative_to(ANTS_BEES).as_posix() for p in (ANTS_BEES / "train").rglob("*.jpg")
    )
    files = files[:75] + files[-75:]
    out = tmp_path_factory.mktemp("fixed") / "f.zarr"
    encode_images(_sources(files), out, EncodeOptions(path="pixels", geometry="80:64"))
    return out


@pytest.fixture(scope="module")
def ragged_path(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("ragged") / "r.zarr"
    encode_images(_sources(RAGGED_FILES), out)
    return out


@pytest.fixture(scope="module")
def native_path(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("native") / "n.zarr"
    encode_images(_sources(RAGGED_FILES), out, EncodeOptions(chroma="native"))
    return out


@pytest.fixture(scope="module")
def rgb_path(tmp_path_factory, data_dir):
    """An RGB store of 70 real images (shards of 64 and a partial 6), 40x40 pixels."""
    files = sorted(
        p.relative_to(ANTS_BEES).as_posix() for p in (ANTS_BEES / "val").rglob("*.jpg")
    )
    out = tmp_path_factory.mktemp("rgb") / "rgb.zarr"
    encode_rgb(_sources(files[:35] + files[-35:]), out, "48:40")
    return out


def _plain_sample(path, part: str, row: int) -> np.ndarray:
    """Sample ``row`` of ``part`` read with plain zarr, one call (the reference: no freqdata
    reader involved; docs/store.md's layout)."""
    g = zarr.open_group(str(path), mode="r")
    if isinstance(g[part], zarr.Array):
        return g[part][row]
    shape = tuple(int(v) for v in g[part]["shape"][row])
    start = int(g[part]["offset"][row])
    return g[part]["data"][start : start + int(np.prod(shape))].reshape(shape)


def _batches(loader) -> list[dict]:
    return [
        {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in loader
    ]


# -- bulk reads -------------------------------------------------------------------------------
def test_bulk_reads_equal_per_sample_reads(fixed_path, monkeypatch):
    store = open_store(fixed_path)
    assert len(store) == 150 and store.layout == "fixed"
    rows = np.array([149, 0, 3, 3, 64, 127, 128, 70, 5, 148, 1, 2, 4, 6, 7, 8, 9, 10, 11, 12])
    ds = L.StoreDataset(fixed_path)
    assert isinstance(ds._reader(ds.parts[0]), ShardReader)
    fast = ds.read_batch(rows)
    monkeypatch.setattr(ShardReader, "open", classmethod(lambda cls, d: None))
    slow = L.StoreDataset(fixed_path).read_batch(rows)  # the zarr fallback
    for j, r in enumerate(rows):
        cube, label = store[int(r)]
        np.testing.assert_array_equal(fast["cubes"][j].numpy(), cube)
        np.testing.assert_array_equal(slow["cubes"][j].numpy(), cube)
        assert fast["labels"][j] == label == slow["labels"][j]
        assert fast["indices"][j] == r
    assert fast["cubes"].dtype == torch.int16 and fast["cubes"].shape == (20, 24, 8, 8)


def test_plain_dataloader_uses_getitems(fixed_path):
    ds = L.StoreDataset(fixed_path)
    batch = next(iter(DataLoader(ds, batch_size=16)))  # torch's __getitems__ + default collate
    ref = ds.read_batch(range(16))
    for k in ("cubes", "labels", "indices"):
        assert torch.equal(batch[k], ref[k])
    assert ds[7]["cubes"].shape == (24, 8, 8)


# -- order ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [150, 7])
@pytest.mark.parametrize("world_size", [1, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_random_order_is_distributed_sampler(n, world_size, drop_last):
    for rank in range(world_size):
        for epoch in (0, 3):
            ours = L.StoreSampler(
                n,
                batch_size=8,
                seed=5,
                epoch=epoch,
                rank=rank,
                world_size=world_size,
                drop_last=drop_last,
            )
            ref = DistributedSampler(
                list(range(n)),
                num_replicas=world_size,
                rank=rank,
                shuffle=True,
                seed=5,
                drop_last=drop_last,
            )
            ref.set_epoch(epoch)
            assert ours.rank_indices().tolist() == list(ref)
            unshuffled = L.StoreSampler(
                n,
                batch_size=8,
                shuffle=False,
                rank=rank,
                world_size=world_size,
                drop_last=drop_last,
            )
            ref = DistributedSampler(
                list(range(n)),
                num_replicas=world_size,
                rank=rank,
                shuffle=False,
                drop_last=drop_last,
            )
            assert unshuffled.rank_indices().tolist() == list(ref)


@pytest.mark.parametrize("order", L.ORDERS)
def test_order_is_deterministic_by_seed_and_epoch(order):
    def batches(seed, epoch):
        s = L.StoreSampler(1000, batch_size=32, seed=seed, order=order, shard_size=64)
        s.set_epoch(epoch)
        return [b.indices.tolist() for b in s], [b.seed for b in s]

    assert batches(0, 0) == batches(0, 0)
    assert batches(0, 0)[0] != batches(0, 1)[0]
    assert batches(0, 0)[0] != batches(1, 0)[0]
    rows = np.concatenate(batches(0, 2)[0])
    assert sorted(rows.tolist()) == list(range(1000))  # one rank: a permutation


@pytest.mark.parametrize("order", L.ORDERS)
@pytest.mark.parametrize("n, world_size", [(1000, 4), (150, 3), (130, 8), (5, 8)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_rank_shards_are_disjoint_equal_and_cover(order, n, world_size, drop_last):
    if drop_last and n < world_size:
        return
    per_rank = [
        L.StoreSampler(
            n,
            batch_size=16,
            seed=3,
            epoch=1,
            rank=r,
            world_size=world_size,
            drop_last=drop_last,
            order=order,
            shard_size=64,
        ).rank_indices()
        for r in range(world_size)
    ]
    sizes = {len(p) for p in per_rank}
    assert len(sizes) == 1
    size = sizes.pop()
    everything = np.concatenate(per_rank)
    if drop_last:
        assert size == n // world_size and len(set(everything.tolist())) == len(everything)
    else:
        assert size == -(-n // world_size)
        assert set(everything.tolist()) == set(range(n))  # covers the dataset
        # only the padding repeats, and it repeats the epoch's first rows
        assert len(everything) - len(set(everything.tolist())) == size * world_size - n


def test_quasi_order_reads_few_shards_per_window():
    s = L.StoreSampler(64 * 40, batch_size=128, seed=1, order="quasi", shard_size=64, window=4)
    rows = s.rank_indices()
    for a in range(0, len(rows), 4 * 64):
        assert len(np.unique(rows[a : a + 4 * 64] // 64)) == 4
    for b in s:
        assert len(np.unique(b.indices // 64)) <= 4
    # ranks take contiguous slices of the shard sequence: at most 2 shards are split
    parts = [
        L.StoreSampler(
            64 * 40, batch_size=128, order="quasi", rank=r, world_size=3, shard_size=64
        ).rank_indices()
        // 64
        for r in range(3)
    ]
    shared = set(parts[0]) & set(parts[1]) | set(parts[1]) & set(parts[2])
    assert len(shared) <= 2


def test_rank_and_world_size_from_torch_distributed(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
    s = L.StoreSampler(100, batch_size=10)
    assert (s.rank, s.world_size) == (2, 3)
    assert (L.StoreSampler(100, batch_size=10, rank=0, world_size=1).world_size) == 1
    with pytest.raises(ValueError):
        L.StoreSampler(100, batch_size=10, rank=3, world_size=3)


# -- the DataLoader ---------------------------------------------------------------------------
@pytest.mark.parametrize("order", L.ORDERS)
@pytest.mark.parametrize("mode", [{"num_workers": 2}, {"threads": 2}])
def test_workers_and_threads_yield_the_same_batches(fixed_path, order, mode):
    kw = dict(
        batch_size=32,
        seed=7,
        epoch=2,
        order=order,
        rank=1,
        world_size=2,
        crop_blocks=(6, 7),
        crop="random",
    )
    zero = _batches(L.make_loader(fixed_path, num_workers=0, **kw))
    par = _batches(L.make_loader(fixed_path, **mode, **kw))
    assert len(zero) == len(par) == 3  # 75 samples on this rank
    for a, b in zip(zero, par, strict=True):
        for k in ("cubes", "labels", "indices"):
            assert torch.equal(a[k], b[k]), k


def test_thread_mode_prefetches_and_stops_cleanly(fixed_path):
    loader = L.make_loader(fixed_path, batch_size=10, threads=2, prefetch_factor=2)
    assert loader.num_workers == 0
    batches = loader.dataset
    it = iter(loader)
    first = next(it)
    assert len(batches._pending) == 4  # threads * prefetch_factor batches ahead
    del it  # leaving the loop early drops the batches read ahead
    assert not batches._pending
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        rows = torch.cat([b["indices"] for b in loader])
        assert sorted(rows.tolist()) == list(range(150))
        if epoch == 0:
            assert torch.equal(rows[:10], first["indices"])
    with pytest.raises(ValueError, match="not both"):
        L.make_loader(fixed_path, batch_size=10, threads=2, num_workers=2)


def test_held_batches_are_never_overwritten(fixed_path):
    """In-process batches come from a buffer pool: one is reused only once no tensor (or
    view) uses it any more."""
    loader = L.make_loader(fixed_path, batch_size=16, shuffle=False, num_workers=0)
    held = list(loader)  # all held: every batch needs its own buffer
    views = [b["cubes"][1:3] for b in loader]  # only views held
    ref = L.StoreDataset(fixed_path)
    for j, b in enumerate(held):
        rows = np.arange(16 * j, min(16 * (j + 1), 150))
        assert torch.equal(b["cubes"], ref.read_batch(rows)["cubes"])
        assert torch.equal(views[j], b["cubes"][1:3])
    del held, views, b
    ptrs = set()
    for b in loader:  # nothing held: the pool hands the same buffers out again
        ptrs.add(b["cubes"].data_ptr())
        del b
    assert len(ptrs) <= 3  # one per batch shape (+1 if the loader still held one)


def test_set_epoch_with_persistent_workers(fixed_path):
    loader = L.make_loader(fixed_path, batch_size=50, num_workers=2, persistent_workers=True)
    seen = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        seen.append(torch.cat([b["indices"] for b in loader]))
    assert torch.equal(seen[0], seen[2]) and not torch.equal(seen[0], seen[1])
    assert sorted(seen[1].tolist()) == list(range(150))
    ref = L.StoreSampler(150, batch_size=50, epoch=1).rank_indices()
    assert seen[1].tolist() == ref.tolist()


def test_ragged_crop_and_pad(ragged_path):
    store = open_store(ragged_path)
    crop = (30, 45)
    ds = L.StoreDataset(ragged_path, crop_blocks=crop, crop="center")
    batch = ds.read_batch(range(len(store)))
    assert batch["cubes"].shape == (len(store), 24, *crop)
    padded = 0
    for j in range(len(store)):
        cube = store[j][0]
        hb, wb = cube.shape[1:]
        assert batch["shapes"][j].tolist() == [hb, wb]
        oy, ox = batch["origins"][j].tolist()
        assert (oy, ox) == (max(hb - 30, 0) // 2, max(wb - 45, 0) // 2)
        got = batch["cubes"][j].numpy()
        h, w = min(hb, 30), min(wb, 45)
        np.testing.assert_array_equal(got[:, :h, :w], cube[:, oy : oy + h, ox : ox + w])
        assert not got[:, h:].any() and not got[:, :, w:].any()  # zero padding
        padded += h < 30 or w < 45
    assert padded >= 2  # the small files are padded
    # random crops: block-aligned offsets anywhere in range, seeded per batch
    rnd = L.StoreDataset(ragged_path, crop_blocks=(8, 8), crop="random")
    a, b = rnd.read_batch(range(8), seed=1), rnd.read_batch(range(8), seed=1)
    assert torch.equal(a["cubes"], b["cubes"])
    origins = []
    for seed in range(6):
        batch = rnd.read_batch(range(8), seed=seed)
        for j in range(8):
            cube = store[j][0]
            oy, ox = batch["origins"][j].tolist()
            assert 0 <= oy <= cube.shape[1] - 8 and 0 <= ox <= cube.shape[2] - 8
            np.testing.assert_array_equal(
                batch["cubes"][j].numpy(), cube[:, oy : oy + 8, ox : ox + 8]
            )
            origins.append((oy, ox))
    assert len(set(origins)) > 20


def test_ragged_without_crop_gives_lists(ragged_path):
    store = open_store(ragged_path)
    batch = next(iter(L.make_loader(ragged_path, batch_size=3, shuffle=False, num_workers=0)))
    assert isinstance(batch["cubes"], list) and len(batch["cubes"]) == 3
    for j, t in enumerate(batch["cubes"]):
        np.testing.assert_array_equal(t.numpy(), store[j][0])


def test_native_crop_keeps_luma_and_chroma_aligned(native_path):
    store = open_store(native_path)
    ds = L.StoreDataset(native_path, crop_blocks=(12, 16), crop="random")
    batch = ds.read_batch(range(len(store)), seed=3)
    assert batch["luma"].shape == (len(store), 16, 12, 16)
    assert batch["chroma"].shape == (len(store), 8, 12, 16)
    factors = {tuple(f) for f in batch["chroma_factor"].tolist()}
    assert factors == {(1, 1), (2, 2), (2, 1)}  # 4:4:4, 4:2:0 and 4:4:0 (vertical only)
    for j in range(len(store)):
        (luma, chroma), _ = store[j]
        fv, fh = batch["chroma_factor"][j].tolist()
        oy, ox = batch["origins"][j].tolist()
        assert oy % fv == 0 and ox % fh == 0
        np.testing.assert_array_equal(batch["luma"][j].numpy(), luma[:, oy : oy + 12, ox : ox + 16])
        ch, cw = -(-12 // fv), -(-16 // fh)
        got = batch["chroma"][j].numpy()
        np.testing.assert_array_equal(
            got[:, :ch, :cw], chroma[:, oy // fv : oy // fv + ch, ox // fh : ox // fh + cw]
        )
        assert not got[:, ch:].any() and not got[:, :, cw:].any()
    with pytest.raises(ValueError, match="chroma_factor"):
        L.StoreDataset(native_path, crop_blocks=(12, 16), chroma_factor=(2, 2)).read_batch(
            range(len(store))
        )
    compact = L.StoreDataset(native_path, crop_blocks=(12, 16), chroma_factor=(2, 2))
    b = compact.read_batch([0, 1, 2])  # 4:2:0 samples only
    assert b["chroma"].shape == (3, 8, 6, 8)


@pytest.mark.parametrize("mode", [{"num_workers": 2}, {"threads": 2}])
def test_native_workers_match(native_path, mode):
    kw = dict(batch_size=4, seed=2, crop_blocks=(10, 12), crop="random")
    zero = _batches(L.make_loader(native_path, num_workers=0, **kw))
    two = _batches(L.make_loader(native_path, **mode, **kw))
    for a, b in zip(zero, two, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_int8_transport_in_the_loader(fixed_path):
    store = open_store(fixed_path)
    t = Int8Transport.from_store(store)
    batch = next(iter(L.make_loader(fixed_path, batch_size=16, num_workers=0, transport=t)))
    assert batch["cubes"].dtype == torch.int8
    ref = L.StoreDataset(fixed_path).read_batch(batch["indices"].numpy())["cubes"]
    assert torch.equal(batch["cubes"], t.encode(ref))


def test_to_device_moves_nested_batches():
    batch = {
        "cubes": torch.ones(2, 3, 4, 4, dtype=torch.int16),
        "labels": torch.tensor([1, 0]),
        "parts": [torch.zeros(1), torch.zeros(2)],
        "name": "x",
    }
    moved = L.to_device(batch, "meta")
    assert moved["cubes"].device.type == "meta" and moved["cubes"].dtype == torch.int16
    assert [t.device.type for t in moved["parts"]] == ["meta", "meta"] and moved["name"] == "x"



# -- every store kind, one batch format -------------------------------------------------------
@pytest.mark.parametrize("kind", ["fixed", "ragged", "native", "rgb"])
def test_every_store_kind_through_make_loader(kind, fixed_path, ragged_path, native_path,
                                              rgb_path):
    """A whole shuffled epoch through make_loader (threads) equals per-sample plain-zarr reads:
    one entry per store part named after it, labels and indices alike for every kind."""
    path = {"fixed": fixed_path, "ragged": ragged_path, "native": native_path,
            "rgb": rgb_path}[kind]  # fmt: skip
    parts = {"fixed": ["cubes"], "ragged": ["cubes"], "native": ["luma", "chroma"],
             "rgb": ["images"]}[kind]  # fmt: skip
    loader = L.make_loader(path, batch_size=16, seed=5, threads=2)
    labels = zarr.open_group(str(path), mode="r")["labels"][:]
    seen = []
    for batch in _batches(loader):
        assert set(parts) | {"labels", "indices"} <= set(batch)
        rows = batch["indices"].tolist()
        seen += rows
        assert batch["labels"].dtype == torch.int64
        assert batch["labels"].tolist() == labels[rows].tolist()
        for part in parts:
            for j, r in enumerate(rows):
                ref = _plain_sample(path, part, r)
                got = batch[part][j]
                assert got.dtype == torch.from_numpy(ref).dtype
                np.testing.assert_array_equal(got.numpy(), ref)
    assert sorted(seen) == list(range(len(labels)))
    if kind == "rgb":
        assert isinstance(loader.store, RGBStore) and batch["images"].dtype == torch.uint8


def test_rgb_crops_and_order_match_the_dct_loader(rgb_path):
    """make_rgb_loader is make_loader: centre crops at (H - h) // 2, random crops at multiples
    of crop_step drawn from the batch seed, the order of a DCT store of as many rows."""
    full = np.stack([_plain_sample(rgb_path, "images", r) for r in range(70)])
    centre = _batches(make_rgb_loader(rgb_path, batch_size=32, shuffle=False, crop_size=(24, 30),
                                      prefetch=0))  # fmt: skip
    got = torch.cat([b["images"] for b in centre]).numpy()
    np.testing.assert_array_equal(got, full[:, :, 8:32, 5:35])
    rnd = make_rgb_loader(rgb_path, batch_size=32, seed=3, crop_size=(24, 24), crop="random",
                          crop_step=4)  # fmt: skip
    offsets = set()
    for batch in _batches(rnd):
        for j, r in enumerate(batch["indices"].tolist()):
            img = batch["images"][j].numpy()
            hits = [(y, x) for y in range(0, 17, 4) for x in range(0, 17, 4)
                    if np.array_equal(img, full[r, :, y : y + 24, x : x + 24])]  # fmt: skip
            assert hits, r
            offsets.add(hits[0])
    assert len(offsets) > 8
    again = torch.cat([b["images"] for b in _batches(rnd)])
    assert torch.equal(again, torch.cat([b["images"] for b in _batches(rnd)]))
    order = torch.cat([b["indices"] for b in _batches(rnd)])
    assert order.tolist() == L.StoreSampler(70, batch_size=32, seed=3).rank_indices().tolist()
    with pytest.raises(UsageError, match="larger than the stored"):
        make_rgb_loader(rgb_path, batch_size=4, crop_size=(48, 48))
    with pytest.raises(UsageError, match="transport"):
        L.make_loader(rgb_path, batch_size=4, transport=object())


def test_subset_rows_and_own_labels(fixed_path):
    """rows= serves a subset (indices are positions in it), labels= replaces the store's."""
    rows = np.array([149, 3, 64, 70, 0, 100, 127])
    maps = np.arange(len(rows) * 6, dtype=np.uint8).reshape(len(rows), 2, 3)
    loader = L.make_loader(fixed_path, rows=rows, labels=maps, batch_size=3, seed=1, threads=2)
    seen = []
    for batch in _batches(loader):
        pos = batch["indices"].tolist()
        seen += pos
        assert batch["labels"].dtype == torch.uint8
        np.testing.assert_array_equal(batch["labels"].numpy(), maps[pos])
        for j, p in enumerate(pos):
            np.testing.assert_array_equal(batch["cubes"][j].numpy(),
                                          _plain_sample(fixed_path, "cubes", int(rows[p])))
    assert sorted(seen) == list(range(len(rows))) and len(loader.store_dataset) == len(rows)
    with pytest.raises(UsageError, match="rows"):
        L.StoreDataset(fixed_path, rows=[150])
    with pytest.raises(UsageError, match="labels"):
        L.StoreDataset(fixed_path, rows=rows, labels=maps[:2])


def test_damaged_rgb_store_raises_through_the_loader(rgb_path, tmp_path):
    """A deleted shard of an RGB store: StoreError naming the samples, never zeros."""
    import shutil

    damaged = tmp_path / "rgb.zarr"
    shutil.copytree(rgb_path, damaged)
    shard = damaged / "images" / "c" / "1" / "0" / "0" / "0"
    assert shard.is_file()
    os.remove(shard)
    loader = L.make_loader(damaged, batch_size=16, shuffle=False, threads=2)
    with pytest.raises(StoreError, match="sample"):
        for _ in loader:
            pass


def test_endless_sampler_chains_epochs():
    """endless=True: epoch 0's batches, then epoch 1's, ... (what set_epoch gives each)."""
    it = iter(L.StoreSampler(10, batch_size=4, seed=2, endless=True, order="quasi", shard_size=3))
    got = [next(it).indices.tolist() for _ in range(9)]  # three epochs of 3 batches
    want = []
    for epoch in range(3):
        s = L.StoreSampler(10, batch_size=4, seed=2, epoch=epoch, order="quasi", shard_size=3)
        want += [r.indices.tolist() for r in s]
    assert got == want


@pytest.fixture(scope="module")
def mask_path(tmp_path_factory, data_dir):
    """A mask store (vectors, patches) of the instances of six COCO val images."""
    from freqdata.masks import encode_masks, load_coco

    val = load_coco(DATA / "coco" / "coco-mini" / "instances_val2017.json")
    keep = sorted(int(im["id"]) for im in val["images"])[:6]
    out = tmp_path_factory.mktemp("masks") / "m.zarr"
    encode_masks(val, out, image_ids=keep, n=64, k=64, patch=True)
    return out


def test_mask_store_instances_through_make_loader(mask_path, tmp_path):
    """make_loader over a mask store's instances: every batch equals plain-zarr reads, one
    epoch covers every instance once; a vectors chunk with flipped bytes raises StoreError."""
    from freqdata.masks.store import open_mask_store

    g = zarr.open_group(str(mask_path), mode="r")
    n = int(g.attrs["freqdata"]["progress"]["samples"])
    assert n > 10
    loader = L.make_loader(open_mask_store(mask_path), batch_size=4, seed=1, threads=2)
    seen = []
    for batch in _batches(loader):
        rows = batch["indices"].tolist()
        seen += rows
        np.testing.assert_array_equal(batch["vectors"].numpy(), g["vectors"][rows])
        np.testing.assert_array_equal(batch["patch_vectors"].numpy(), g["patch/vectors"][rows])
        np.testing.assert_array_equal(batch["patch_labels"].numpy(), g["patch/labels"][rows])
        assert batch["labels"].tolist() == g["category_ids"][rows].tolist()
        assert batch["image_ids"].tolist() == g["image_ids"][rows].tolist()
        np.testing.assert_array_equal(batch["boxes"].numpy(), g["boxes"][rows])
    assert sorted(seen) == list(range(n))
    with pytest.raises(UsageError, match="StoreDataset"):
        L.make_loader(open_mask_store(mask_path), batch_size=4, crop_blocks=(2, 2))
    import shutil

    damaged = tmp_path / "m.zarr"
    shutil.copytree(mask_path, damaged)
    chunk = sorted(p for p in (damaged / "vectors" / "c").rglob("*") if p.is_file())[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    loader = L.make_loader(open_mask_store(damaged), batch_size=4, shuffle=False, threads=2)
    with pytest.raises(StoreError, match="vectors"):  # at read time, in the loader
        for _ in loader:
            pass


def test_any_batch_reader_goes_through_make_loader(data_dir):
    """make_loader serves any BatchReader: the on-the-fly JPEG dataset in threads gives the
    batches of its own loader (same order and training draws for the same seed)."""
    from freqdata.augment.onthefly import JpegDataset, make_jpeg_loader

    ds = JpegDataset(ANTS_BEES / "val", "dctnet-6", "64:48", train=True)
    assert isinstance(ds, L.BatchReader)
    n = len(ds)
    ours = _batches(L.make_loader(ds, batch_size=16, seed=4, threads=2, rank=0, world_size=1))
    ref = _batches(make_jpeg_loader(ds, batch_size=16, seed=4))
    assert len(ours) == len(ref) == -(-n // 16)
    for a, b in zip(ours, ref, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
