"""Store integrity (issue 12): real stores encoded from real images, damaged for real (files
deleted, bytes flipped, shards truncated). Every damage must raise a StoreError naming the
array and the sample through ``open_store(...)[i]``, ``make_loader`` and
``freqdata inspect --verify`` (exit 1) — never read back as fill values or wrong data —
and an undamaged store must verify clean (exit 0).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import ANTS_BEES, DATA
from typer.testing import CliRunner
from zarr.codecs import BloscCodec, BloscShuffle

from freqdata import make_loader, open_store
from freqdata.cli.main import app
from freqdata.errors import StoreError
from freqdata.job import EncodeOptions, encode_images
from freqdata.masks import load_coco
from freqdata.masks.store import encode_masks, open_mask_store
from freqdata.sources import Sources
from freqdata.store.verify import verify_store

VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"
COCO_IMAGES = DATA / "images-seg" / "coco-mini" / "val2017"
runner = CliRunner()


def _ants_bees(n: int) -> Sources:
    """``n`` real ants/bees training images, half of each class."""
    paths = [
        str(p)
        for cls in ("ants", "bees")
        for p in sorted((ANTS_BEES / "train" / cls).glob("*.jpg"))[: n // 2]
    ]
    return Sources(paths, [int("/bees/" in p) for p in paths], ["ants", "bees"])


@pytest.fixture(scope="module")
def fixed(tmp_path_factory, data_dir) -> Path:
    """40 images, pixel path at 80:64 (8x8 blocks): one shard of 40 samples."""
    out = tmp_path_factory.mktemp("fixed") / "f.zarr"
    encode_images(_ants_bees(40), out, EncodeOptions(path="pixels", geometry="80:64"))
    return out


@pytest.fixture(scope="module")
def ragged(tmp_path_factory, data_dir) -> Path:
    """20 whole images (coefficient path): several 256 Ki-element data chunks."""
    out = tmp_path_factory.mktemp("ragged") / "r.zarr"
    encode_images(_ants_bees(20), out)
    return out


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _shard_index(shard: Path, rows: int = 64) -> np.ndarray:
    """(rows, 2) uint64 (offset, length) of each inner chunk: the index at the shard's end."""
    raw = shard.read_bytes()[-(16 * rows + 4) : -4]
    return np.frombuffer(raw, "<u8").reshape(rows, 2)


def _all_items(path: Path) -> None:
    s = open_store(path)
    for i in range(len(s)):
        s[i]


def _loader(path: Path) -> None:
    for _ in make_loader(path, batch_size=8, shuffle=False):
        pass


def _verify_cli(path: Path, code: int) -> str:
    r = runner.invoke(app, ["inspect", str(path), "--verify"])
    assert r.exit_code == code, r.output
    return r.output


def _damaged_everywhere(path: Path, *fragments: str) -> None:
    """Indexing, the loader and inspect --verify all refuse ``path``, naming ``fragments``."""
    for read in (_all_items, _loader):
        with pytest.raises(StoreError) as e:
            read(path)
        for f in fragments:
            assert f in str(e.value), (read.__name__, str(e.value))
    out = _verify_cli(path, 1)
    assert "DAMAGED" in out


def test_undamaged_stores_verify_clean(fixed, ragged):
    for path in (fixed, ragged):
        report = verify_store(path)
        assert report.ok and not report.notes, str(report)
        assert report.format_version == 2 and report.samples == len(open_store(path))
        assert "OK" in _verify_cli(path, 0)


def test_every_array_has_checksums(fixed, ragged):
    """Each inner chunk (or chunk) ends with a crc32c after Blosc; shard indexes too."""
    for path in (fixed, ragged):
        g = zarr.open_group(str(path), mode="r")
        for name, arr in g.members(max_depth=None):
            if not isinstance(arr, zarr.Array):
                continue
            codecs = arr.metadata.to_dict()["codecs"]
            if codecs[0]["name"] == "sharding_indexed":
                conf = codecs[0]["configuration"]
                assert [c["name"] for c in conf["index_codecs"]] == ["bytes", "crc32c"]
                codecs = conf["codecs"]
            assert [c["name"] for c in codecs][-2:] == ["blosc", "crc32c"], name


def test_deleted_shard(fixed, tmp_path):
    path = _copy(fixed, tmp_path)
    (path / "cubes/c/0/0/0/0").unlink()
    _damaged_everywhere(path, "'cubes'", "shard file missing")
    with pytest.raises(StoreError, match="sample 7"):
        open_store(path)[7]


def test_deleted_labels_chunk(fixed, tmp_path):
    path = _copy(fixed, tmp_path)
    (path / "labels/c/0").unlink()
    with pytest.raises(StoreError, match="'labels', samples 0-39: chunk 'labels/c/0' is missing"):
        open_store(path)
    _damaged_everywhere(path, "'labels'")
    assert "labels: samples 0-39" in _verify_cli(path, 1)


def test_deleted_ragged_offsets_chunk(ragged, tmp_path):
    path = _copy(ragged, tmp_path)
    (path / "cubes/offset/c/0").unlink()
    _damaged_everywhere(path, "'cubes/offset'", "missing")


def test_deleted_ragged_data_chunk(ragged, tmp_path):
    path = _copy(ragged, tmp_path)
    s = open_store(ragged)
    offsets, shapes = s._index["cubes"]
    ends = offsets + shapes.astype(np.int64).prod(axis=1)
    inside = np.flatnonzero((offsets >= 1 << 18) & (ends <= 2 << 18))  # wholly in chunk 1
    outside = np.flatnonzero(ends <= 1 << 18)  # wholly in chunk 0
    assert inside.size and outside.size
    (path / "cubes/data/c/1").unlink()
    damaged = open_store(path)
    with pytest.raises(StoreError, match=f"sample {inside[0]}: chunk 'cubes/data/c/1' is missing"):
        damaged[int(inside[0])]
    np.testing.assert_array_equal(damaged[int(outside[0])][0], s[int(outside[0])][0])
    _damaged_everywhere(path, "'cubes/data'")


def test_flipped_byte_in_a_shard_names_the_sample(fixed, tmp_path):
    path = _copy(fixed, tmp_path)
    shard = path / "cubes/c/0/0/0/0"
    offset, length = _shard_index(shard)[5]
    _flip(shard, int(offset + length // 2))
    damaged, clean = open_store(path), open_store(fixed)
    with pytest.raises(StoreError, match="sample 5: chunk checksum mismatch"):
        damaged[5]
    for i in (4, 6):  # the neighbours in the same shard are intact
        np.testing.assert_array_equal(damaged[i][0], clean[i][0])
    _damaged_everywhere(path, "checksum")
    report = verify_store(path)
    assert [(p.array, p.rows) for p in report.problems] == [("cubes", "sample 5")]


def test_flipped_byte_in_a_ragged_chunk(ragged, tmp_path):
    path = _copy(ragged, tmp_path)
    _flip(path / "cubes/data/c/0", 1000)
    with pytest.raises(StoreError, match="sample 0: chunk checksum mismatch"):
        open_store(path)[0]
    _damaged_everywhere(path, "'cubes/data'", "checksum")


def test_truncated_shard(fixed, tmp_path):
    path = _copy(fixed, tmp_path)
    shard = path / "cubes/c/0/0/0/0"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    _damaged_everywhere(path, "'cubes'", "truncated")


def test_all_zero_samples_and_unlabelled_rows_are_stored(tmp_path, data_dir):
    """Chunks equal to the fill value (an all-zero cube, labels all -1) are written, so their
    absence always means damage."""
    from PIL import Image

    gray = tmp_path / "gray.jpg"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(gray, quality=95)
    real = _ants_bees(4).paths
    out = tmp_path / "z.zarr"
    encode_images(Sources([str(gray), *real], [-1] * 5, []), out,
                  EncodeOptions(path="pixels", geometry="80:64"))  # fmt: skip
    s = open_store(out)
    assert not s[0][0].any() and (s.labels == -1).all()
    idx = _shard_index(out / "cubes/c/0/0/0/0")
    assert (idx[:5, 0] != np.iinfo(np.uint64).max).all()  # every sample has its chunk
    assert (out / "labels/c/0").is_file()
    assert verify_store(out).ok


def _as_format1(src: Path, dst: Path) -> None:
    """``src`` rewritten as freqdata 1.x wrote stores: Blosc without checksums, zarr's
    default of not storing chunks equal to the fill value, format_version 1."""
    g = zarr.open_group(str(src), mode="r")
    out = zarr.open_group(str(dst), mode="w", zarr_format=3)
    blosc = BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.shuffle, typesize=2)
    for name, node in g.members(max_depth=None):
        if isinstance(node, zarr.Group):
            out.require_group(name)
            continue
        new = out.create_array(name, shape=node.shape, dtype=node.dtype, chunks=node.chunks,
                               shards=node.shards, fill_value=node.fill_value,
                               compressors=blosc if node.dtype == np.int16 else "auto")
        new[...] = node[...]
    attrs = dict(g.attrs["freqdata"])
    attrs["format_version"] = 1
    out.attrs["freqdata"] = attrs


def test_format1_stores_open_and_read_without_verification(fixed, tmp_path):
    old = tmp_path / "old.zarr"
    _as_format1(fixed, old)
    s, ref = open_store(old), open_store(fixed)
    assert s.format_version == 1 and len(s) == len(ref)
    for i in (0, 17, len(s) - 1):
        np.testing.assert_array_equal(s[i][0], ref[i][0])
    batches = list(make_loader(old, batch_size=16, shuffle=False))
    np.testing.assert_array_equal(batches[0]["cubes"][3].numpy(), ref[3][0])
    report = verify_store(old)
    assert report.ok and any("format 1" in n for n in report.notes), str(report)


@pytest.fixture(scope="module")
def coco_ids(data_dir) -> list[int]:
    val = load_coco(VAL)
    return sorted(int(im["id"]) for im in val["images"])[:4]


def test_mask_store(tmp_path, coco_ids):
    out = tmp_path / "m.zarr"
    encode_masks(VAL, out, image_ids=coco_ids, weak=[2], batch_images=2)
    assert verify_store(out).ok and "OK" in _verify_cli(out, 0)

    crowd = _copy(out, tmp_path / "a")
    (crowd / "iscrowd/c/0").unlink()  # all zeros: zarr would not have stored it by default
    with pytest.raises(StoreError, match="'iscrowd', instances 0-"):
        open_mask_store(crowd)
    assert "iscrowd: instances" in _verify_cli(crowd, 1)

    flipped = _copy(out, tmp_path / "b")
    _flip(flipped / "vectors/c/0/0", 200)
    s = open_mask_store(flipped)
    with pytest.raises(StoreError, match="'vectors', instance 0: chunk checksum mismatch"):
        s[0]
    assert "vectors: instances" in _verify_cli(flipped, 1)

    weak = _copy(out, tmp_path / "c")
    (weak / "weak/full/data/c/0").unlink()
    with pytest.raises(StoreError, match="image row 0: chunk 'weak/full/data/c/0' is missing"):
        open_mask_store(weak).weak_full(0)
    assert "weak/full/data" in _verify_cli(weak, 1)


def test_image_store_with_masks(tmp_path, coco_ids):
    val = load_coco(VAL)
    names = {int(im["id"]): im["file_name"] for im in val["images"]}
    paths = [str(COCO_IMAGES / names[i]) for i in coco_ids]
    out = tmp_path / "i.zarr"
    encode_images(Sources(paths, [-1] * len(paths), []), out,
                  EncodeOptions(path="pixels", geometry="80:64"))  # fmt: skip
    encode_masks(VAL, into=out, image_ids=coco_ids, patch=False)
    report = verify_store(out)
    assert report.ok and report.kind == "image store with masks", str(report)
    (out / "masks/vectors/c/0/0").unlink()
    assert "masks/vectors: instances" in _verify_cli(out, 1)


def test_rgb_store(tmp_path, data_dir):
    from freqdata.store.rgb import encode_rgb
    from freqdata.trainers.rgb import RGBStore

    out = tmp_path / "rgb.zarr"
    encode_rgb(_ants_bees(10), out, "72:64")
    assert verify_store(out).ok and "RGB store" in _verify_cli(out, 0)
    (out / "images/c/0/0/0/0").unlink()
    s = RGBStore(out)
    with pytest.raises(StoreError, match="'images', samples 0-9: shard file missing"):
        s.read(np.arange(10), np.empty((10, 3, 64, 64), np.uint8))
    assert "images: samples 0-9" in _verify_cli(out, 1)


def test_row_absent_from_an_intact_shard_index(fixed, tmp_path):
    """A shard whose (valid, crc-matching) index marks a committed row absent: the direct
    reader and verify name the sample; verify finds it through zarr too (a file:// URL)."""
    import google_crc32c

    path = _copy(fixed, tmp_path)
    shard = path / "cubes/c/0/0/0/0"
    raw = bytearray(shard.read_bytes())
    n = 16 * 64 + 4
    index = _shard_index(shard).copy()
    index[3] = np.iinfo(np.uint64).max
    body = index.astype("<u8").tobytes()
    raw[-n:] = body + google_crc32c.value(body).to_bytes(4, "little")
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="sample 3: chunk absent from the shard index"):
        open_store(path)[3]
    for where in (path, path.resolve().as_uri()):
        report = verify_store(where)
        assert [(p.array, p.rows) for p in report.problems] == [("cubes", "sample 3")], where
