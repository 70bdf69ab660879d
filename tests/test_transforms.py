"""Device-side transforms and the int8 transport, against pixel-domain / float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ANTS_BEES, COCO_VAL
from test_loader import RAGGED_FILES, _sources

from freqdata import encode_image, open_store
from freqdata.dct import block_dct, block_idct
from freqdata.job import EncodeOptions, encode_images
from freqdata.loader import StoreDataset
from freqdata.pixels import load_ycbcr
from freqdata.presets import resolve_preset
from freqdata.transforms import (
    DeviceAugment,
    Normalize,
    center_crop,
    channel_info,
    hflip,
    normalize,
    random_crop,
    random_hflip,
    upsample_chroma,
)
from freqdata.transport import (
    K_CANDIDATES,
    Int8Transport,
    make_transport,
    transport_bytes,
    transport_error,
)

ALL_NAMES = [f"{c}{k}" for c in ("Y", "Cb", "Cr") for k in range(64)]
SUBSAMPLED = ["train/ants/175998972.jpg", "train/ants/kurokusa.jpg", "train/ants/ant photos.jpg"]


@pytest.fixture(scope="module")
def fixed(tmp_path_factory, data_dir):
    files = sorted((ANTS_BEES / "val").rglob("*.jpg"))[:40]
    out = tmp_path_factory.mktemp("tfixed") / "f.zarr"
    srcs = _sources([p.relative_to(ANTS_BEES).as_posix() for p in files])
    encode_images(srcs, out, EncodeOptions(path="pixels", geometry="96:80"))
    store = open_store(out)
    return store, StoreDataset(store).read_batch(range(len(store)))["cubes"]


def _coco(n: int) -> list:
    return sorted(COCO_VAL.glob("*.jpg"))[:n]


# -- normalization ----------------------------------------------------------------------------
def test_normalize_matches_float64_reference(fixed):
    store, cubes = fixed
    ref = (cubes.numpy().astype(np.float64) - store.mean[:, None, None]) / store.std[:, None, None]
    out = normalize(cubes, torch.as_tensor(store.mean), torch.as_tensor(store.std))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    mod = Normalize.from_store(store, "cpu")
    np.testing.assert_allclose(mod(cubes).numpy(), ref, rtol=1e-5, atol=1e-5)
    std = store.std.copy()
    std[3] = 0.0
    z = Normalize(store.mean, std)(cubes)
    np.testing.assert_allclose(z[:, 3].numpy(), cubes[:, 3].numpy() - store.mean[3], atol=1e-3)
    assert torch.isfinite(normalize(cubes, torch.as_tensor(store.mean), torch.as_tensor(std))).all()


# -- crops ------------------------------------------------------------------------------------
def test_random_and_center_crops_are_block_slices(fixed):
    _, cubes = fixed  # (40, 24, 10, 10)
    g = torch.Generator().manual_seed(0)
    out, off = random_crop(cubes, (5, 6), g, return_offsets=True)
    assert out.shape == (40, 24, 5, 6) and out.dtype == torch.int16
    for j, (oy, ox) in enumerate(off.tolist()):
        assert 0 <= oy <= 5 and 0 <= ox <= 4
        assert torch.equal(out[j], cubes[j, :, oy : oy + 5, ox : ox + 6])
    assert len({tuple(o) for o in off.tolist()}) > 10
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(random_crop(cubes, (5, 6), g2), out)  # same generator state, same crop
    assert torch.equal(center_crop(cubes, (5, 6)), cubes[..., 2:7, 2:8])
    with pytest.raises(ValueError):
        center_crop(cubes, (11, 4))


# -- flips ------------------------------------------------------------------------------------
def test_hflip_equals_dct_of_flipped_pixels(data_dir):
    """float64: flip pixels with numpy → block DCT == flip in the DCT domain, on real images."""
    odd = channel_info(ALL_NAMES).odd_u()
    for path in _coco(3):
        planes = load_ycbcr(path, "none").planes.astype(np.float64)  # (3, H, W), whole blocks
        cube = np.concatenate([block_dct(p, dtype=np.float64) for p in planes])
        flipped = np.concatenate([block_dct(p[:, ::-1], dtype=np.float64) for p in planes])
        got = hflip(torch.from_numpy(cube), odd).numpy()
        np.testing.assert_allclose(got, flipped, rtol=0, atol=1e-9)
        assert np.abs(flipped).max() > 100  # real content


def test_hflip_of_a_store_cube(tmp_path, data_dir):
    """int16 cubes from a store (pixel path, preset all): equal to encoding the flipped pixels
    up to the float32 rounding of the encoder (values within 1; almost all identical)."""
    paths = _coco(2)
    srcs = type(_sources([]))([str(p) for p in paths], [-1, -1], [])
    encode_images(srcs, tmp_path / "s.zarr", EncodeOptions(preset="all", path="pixels"))
    store = open_store(tmp_path / "s.zarr")
    select = resolve_preset("all")
    for i, path in enumerate(paths):
        cube = store[i][0]
        planes = load_ycbcr(path, "none").planes
        ref = np.concatenate(
            [np.rint(block_dct(p[:, ::-1], sel)) for p, sel in zip(planes, select, strict=True)]
        )
        got = hflip(torch.from_numpy(cube), store.channel_names).numpy()
        assert got.dtype == np.int16
        diff = np.abs(got.astype(np.int64) - ref.astype(np.int64))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    # per-sample flips of a batch
    x = torch.from_numpy(np.stack([store[0][0][:, :40, :40], store[1][0][:, :40, :40]]))
    y, flipped = random_hflip(x, store.channel_names, 0.5, torch.Generator().manual_seed(1))
    for j in range(2):
        want = hflip(x[j], store.channel_names) if flipped[j] else x[j]
        assert torch.equal(y[j], want)
    assert torch.equal(hflip(hflip(x, store.channel_names), store.channel_names), x)


# -- chroma upsampling ------------------------------------------------------------------------
def _factor(luma: np.ndarray, chroma: np.ndarray) -> tuple[int, int]:
    return tuple(  # type: ignore[return-value]
        next(f for f in (1, 2, 4) if -(-lb // f) == cb)
        for lb, cb in zip(luma.shape[1:], chroma.shape[1:], strict=True)
    )


@pytest.mark.parametrize("name", SUBSAMPLED)
def test_upsample_chroma_is_exact_with_all_coefficients(name, data_dir):
    path = ANTS_BEES / name
    luma, chroma = encode_image(path, "all", chroma="native")
    full = encode_image(path, "all", chroma="full")
    f = _factor(luma, chroma)
    assert f == (2, 2)
    up = upsample_chroma(torch.from_numpy(chroma)[None].double(), f, range(64), luma.shape[1:])
    err = np.abs(up[0].numpy() - full[64:])
    assert err.max() <= 0.5 + 1e-9  # the full path rounds once to int16


@pytest.mark.parametrize("name", SUBSAMPLED[:2])
def test_upsample_chroma_with_a_selection_is_the_low_pass_chroma(name, data_dir):
    """dctnet-24 keeps chroma 0, 1, 8, 9: the result is exactly those coefficients of the box
    upsampled chroma plane rebuilt from the kept coefficients (pixel-domain reference)."""
    p = resolve_preset("dctnet-24")
    luma, chroma = encode_image(ANTS_BEES / name, "dctnet-24", chroma="native")
    fv, fh = _factor(luma, chroma)
    hb, wb = luma.shape[1:]
    up = upsample_chroma(torch.from_numpy(chroma)[None].double(), (fv, fh), p.cb, (hb, wb))[0]
    n = len(p.cb)
    for g in range(2):
        coef = np.zeros((64, *chroma.shape[1:]))
        coef[p.cb] = chroma[g * n : (g + 1) * n]
        plane = block_idct(coef, level_shift=False)
        plane = np.repeat(np.repeat(plane, fv, axis=0), fh, axis=1)[: 8 * hb, : 8 * wb]
        ref = block_dct(plane, p.cb, level_shift=False, dtype=np.float64)
        np.testing.assert_allclose(up[g * n : (g + 1) * n].numpy(), ref, rtol=0, atol=1e-9)


def test_upsample_chroma_selection_error_against_full_encoding(data_dir):
    """The approximation's error on real 4:2:0 files vs encode_image(..., chroma='full')."""
    p = resolve_preset("dctnet-24")
    errs = []
    for name in SUBSAMPLED:
        luma, chroma = encode_image(ANTS_BEES / name, p, chroma="native")
        full = encode_image(ANTS_BEES / name, p, chroma="full")
        up = upsample_chroma(
            torch.from_numpy(chroma)[None], _factor(luma, chroma), p.cb, luma.shape[1:]
        )[0]
        errs.append((up.numpy() - full[16:]).reshape(8, -1))
    err = np.concatenate(errs, axis=1)
    rms = np.sqrt((err**2).mean(axis=1))  # Cb0 1 8 9, Cr0 1 8 9
    # measured on these 3 files: DC 4.2 / 5.4, first AC 9.9-20.6 (freqdata.transforms docs)
    assert rms[[0, 4]].max() < 8 and rms.max() < 30 and np.abs(err).max() < 400
    assert rms[[1, 2, 3, 5, 6, 7]].min() > 5  # the first AC channels are poor: u, v = 2, 3 missing


def test_upsample_chroma_per_sample_factors(tmp_path, data_dir):
    """A mixed batch from the loader (4:2:0, 4:4:4, 4:4:0) == per-sample uniform upsampling."""
    encode_images(
        _sources(RAGGED_FILES),
        tmp_path / "n.zarr",
        EncodeOptions(preset="dctnet-24", chroma="native"),
    )
    ds = StoreDataset(tmp_path / "n.zarr", crop_blocks=(12, 16))
    b = ds.read_batch(range(len(ds)))
    idx = resolve_preset("dctnet-24").cb
    up = upsample_chroma(b["chroma"].double(), b["chroma_factor"], idx, (12, 16))
    assert up.shape == (len(ds), 8, 12, 16)
    for j in range(len(ds)):
        fv, fh = b["chroma_factor"][j].tolist()
        src = b["chroma"][j : j + 1, :, : -(-12 // fv), : -(-16 // fh)].double()
        ref = upsample_chroma(src, (fv, fh), idx)[..., :12, :16]
        np.testing.assert_allclose(up[j : j + 1].numpy(), ref.numpy(), atol=1e-9)
    # and the device pipeline joins luma and upsampled chroma in the store's channel order
    aug = DeviceAugment(ds.store, train=False)
    x, labels = aug(b)
    assert x.shape == (len(ds), 24, 12, 16) and x.dtype == torch.float32
    raw = torch.cat([b["luma"].float(), up.float()], 1)
    ref = normalize(raw, torch.as_tensor(ds.store.mean), torch.as_tensor(ds.store.std))
    np.testing.assert_allclose(x.numpy(), ref.numpy(), atol=1e-4)
    assert torch.equal(labels, b["labels"])


# -- transport --------------------------------------------------------------------------------
def test_int8_linear_transport_error_bounds(fixed):
    store, cubes = fixed
    t = Int8Transport.from_store(store, k=6.0, companding="linear")
    q = t.encode(cubes)
    assert q.dtype == torch.int8 and q.shape == cubes.shape
    assert isinstance(t.encode(cubes.numpy()), np.ndarray)
    x = cubes.double().numpy()
    dec = t.decode(q).double().numpy()
    z = (x - t.mean[:, None, None]) / t.std[:, None, None]
    inside = np.abs(z) <= 6.0
    step = np.broadcast_to(t.step[:, None, None], x[0].shape)
    bound = np.where(step <= 1, 0, step / 2) + 1e-3
    assert (np.abs(dec - x) <= bound)[inside].all()
    assert inside.mean() > 0.99 and (t.step <= 1).any()  # high frequencies: lossless in range
    np.testing.assert_allclose(
        t.decode_normalized(q).numpy(),
        normalize(t.decode(q), torch.as_tensor(store.mean), torch.as_tensor(store.std)).numpy(),
        atol=1e-5,
    )


def test_int8_sqrt_transport_never_clips_and_matches_float64(fixed):
    store, cubes = fixed
    t = Int8Transport.from_store(store)  # sqrt companding, range from the DCT bound
    assert t.companding == "sqrt"
    x = cubes.double().numpy()
    q = t.encode(cubes)
    # the lookup-table encoder is exactly the float64 definition
    flat = np.moveaxis(x, 1, 0).reshape(24, -1)
    np.testing.assert_array_equal(np.moveaxis(q.numpy(), 1, 0).reshape(24, -1), t._quantize(flat))
    assert np.abs(q.numpy()).max() < 127  # nothing near the range limit: no clipping
    dec = t.decode(q).double().numpy()
    ref = np.moveaxis(t._roundtrip(flat).reshape(24, *x.shape[:1], *x.shape[2:]), 0, 1)
    np.testing.assert_allclose(dec, ref, atol=1e-3)
    err = np.abs(dec - x)
    bound = (np.abs(q.numpy()) + 0.25) * (t.scale / 127**2)[:, None, None] + 1e-3
    assert (err <= bound).all()
    assert (err == 0).mean() > 0.2  # fine levels round back to the exact integer
    # extreme values saturate instead of wrapping
    big = torch.full((1, 24, 2, 2), 2000, dtype=torch.int16)
    big[..., 0, 0] = -2000
    qb = t.encode(big)
    assert (qb[..., 1, 1] == 127).all() or (t.decode(qb)[..., 1, 1] > 1000).all()


def test_int8_calibration_and_bytes(fixed):
    store, cubes = fixed
    cal = Int8Transport.calibrate(store, cubes.numpy())
    assert cal.companding == "linear" and set(cal.k.tolist()) <= set(K_CANDIDATES)
    e_cal = transport_error(cal, cubes.numpy())
    for k in (4.0, 8.0):
        fixed_k = Int8Transport.from_store(store, k, "linear")
        assert e_cal["rms"] <= transport_error(fixed_k, cubes)["rms"]
    e_sqrt = transport_error(Int8Transport.from_store(store), cubes.numpy())
    assert e_sqrt["rms"] < 2 and e_sqrt["rms_normalized"] < 0.05 and e_sqrt["clipped"] == 0
    assert e_sqrt["max_abs"] < e_cal["max_abs"]
    assert transport_bytes("int16", store) == 2 * 24 * 10 * 10
    assert transport_bytes("int8", store) == 24 * 10 * 10
    assert transport_bytes("float32", (24, 56, 56)) == 4 * 24 * 56 * 56
    assert make_transport("int16", store) is None
    assert isinstance(make_transport("int8", store), Int8Transport)


def test_device_augment_on_a_fixed_batch(fixed):
    store, cubes = fixed
    batch = {"cubes": cubes, "labels": torch.arange(len(cubes))}
    x, _ = DeviceAugment(store, train=False, crop=(8, 8))(batch)
    ref = normalize(
        center_crop(cubes, (8, 8)), torch.as_tensor(store.mean), torch.as_tensor(store.std)
    )
    np.testing.assert_allclose(x.numpy(), ref.numpy(), atol=1e-5)
    a, _ = DeviceAugment(store, crop=(8, 8), seed=3)(batch)
    b, _ = DeviceAugment(store, crop=(8, 8), seed=3)(batch)
    assert a.shape == (len(cubes), 24, 8, 8) and torch.equal(a, b)
    t = Int8Transport.from_store(store)
    c, _ = DeviceAugment(store, train=False, transport=t)(
        {"cubes": t.encode(cubes), "labels": batch["labels"]}
    )
    full, _ = DeviceAugment(store, train=False)(batch)
    torch.testing.assert_close(c, t.decode_normalized(t.encode(cubes)), rtol=0, atol=1e-5)
    assert (c - full).pow(2).mean().sqrt() < 0.05  # RMS in normalized units
    assert (c - full).abs().max() < 0.5
