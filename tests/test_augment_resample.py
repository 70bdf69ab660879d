"""Resized crop in the DCT domain and torchvision's box sampling, on real images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from augment_data import ALL_NAMES, IMAGENET, coefficients, full_batch, pixels
from PIL import Image

from freqdata.augment import RandomResizedCrop, resized_crop, resized_crop_params
from freqdata.augment.sampling import erasing_params
from freqdata.errors import UsageError
from freqdata.pixels import random_resized_crop_params
from freqdata.presets import PRESETS
from freqdata.transforms import channel_info


# -- torchvision's algorithms, written out (torchvision cannot be installed beside this torch) --
def tv_rrc_get_params(height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision.transforms.RandomResizedCrop.get_params, verbatim (global RNG; ``round``
    for ``int(round(...))``)."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        w = round(math.sqrt(target_area * aspect_ratio))
        h = round(math.sqrt(target_area / aspect_ratio))
        if 0 < w <= width and 0 < h <= height:
            i = torch.randint(0, height - h + 1, size=(1,)).item()
            j = torch.randint(0, width - w + 1, size=(1,)).item()
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = round(w / min(ratio))
    elif in_ratio > max(ratio):
        h = height
        w = round(h * max(ratio))
    else:
        w = width
        h = height
    i = (height - h) // 2
    j = (width - w) // 2
    return i, j, h, w


def tv_erasing(p, img_h, img_w, scale=(0.02, 0.33), ratio=(0.3, 3.3)):
    """torchvision RandomErasing.forward's draws (p, then get_params), global RNG."""
    if not torch.rand(1) < p:
        return 0, 0, 0, 0
    area = img_h * img_w
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        erase_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        h = round(math.sqrt(erase_area * aspect_ratio))
        w = round(math.sqrt(erase_area / aspect_ratio))
        if not (h < img_h and w < img_w):
            continue
        i = torch.randint(0, img_h - h + 1, size=(1,)).item()
        j = torch.randint(0, img_w - w + 1, size=(1,)).item()
        return i, j, h, w
    return 0, 0, 0, 0


@pytest.mark.parametrize(
    ("height", "width", "scale", "ratio"),
    [
        (375, 500, (0.08, 1.0), (3 / 4, 4 / 3)),
        (448, 448, (0.08, 1.0), (3 / 4, 4 / 3)),
        (40, 400, (0.08, 1.0), (3 / 4, 4 / 3)),  # extreme aspect: the centre fallback
        (400, 40, (0.5, 1.0), (3 / 4, 4 / 3)),
        (224, 300, (0.9, 1.0), (1.0, 1.0)),
    ],
)
def test_resized_crop_params_equal_torchvision(height, width, scale, ratio):
    seed = 1234 + height
    g = torch.Generator().manual_seed(seed)
    got = resized_crop_params(height, width, 300, g, scale, ratio)
    state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        ref = [tv_rrc_get_params(height, width, scale, ratio) for _ in range(300)]
    finally:
        torch.set_rng_state(state)
    assert got.tolist() == [list(r) for r in ref]
    top, left, h, w = got.T
    assert bool((top >= 0).all() and (top + h <= height).all() and (left + w <= width).all())


def test_resized_crop_params_distribution_and_per_sample_sizes():
    """Same distribution as the pixel path's numpy implementation (an independent RNG)."""
    g = torch.Generator().manual_seed(0)
    boxes = resized_crop_params(375, 500, 4000, g).double()
    rng = np.random.default_rng(0)
    ref = torch.tensor([random_resized_crop_params(500, 375, rng) for _ in range(4000)]).double()
    for got, exp in ((boxes, ref), (boxes[:, 2] * boxes[:, 3], ref[:, 2] * ref[:, 3])):
        assert torch.allclose(got.mean(0), exp.mean(0), rtol=0.04)
        assert torch.allclose(got.std(0), exp.std(0), rtol=0.06)
    g = torch.Generator().manual_seed(1)
    hs, ws = torch.tensor([100, 200, 300]), torch.tensor([50, 400, 300])
    b = resized_crop_params(hs, ws, 3, g)
    assert bool((b[:, 0] + b[:, 2] <= hs).all() and (b[:, 1] + b[:, 3] <= ws).all())
    with pytest.raises(UsageError):
        resized_crop_params(10, 10, 1, scale=(0.5, 0.1))


def test_erasing_params_equal_torchvision():
    g = torch.Generator().manual_seed(5)
    got = erasing_params(56, 56, 200, g, p=0.5)
    state = torch.get_rng_state()
    try:
        torch.manual_seed(5)
        ref = [tv_erasing(0.5, 56, 56) for _ in range(200)]
    finally:
        torch.set_rng_state(state)
    assert got.tolist() == [list(r) for r in ref]
    assert 50 < int((got[:, 2] > 0).sum()) < 150


# -- the exactness contract: all 64 coefficients ----------------------------------------------
def _reference(batch: np.ndarray, boxes, size, kernel: str) -> np.ndarray:
    """float64: scipy block IDCT → crop → torch interpolate (the named kernel) → block DCT."""
    pix = pixels(batch)
    out = []
    for p, (t, lf, h, w) in zip(pix, boxes, strict=True):
        crop = torch.as_tensor(p[None, :, t : t + h, lf : lf + w])
        r = F.interpolate(
            crop,
            size=(8 * size[0], 8 * size[1]),
            mode="bilinear",
            align_corners=False,
            antialias=kernel == "triangle",
        )
        out.append(r[0].numpy())
    return coefficients(np.stack(out))


@pytest.fixture(scope="module")
def batch(data_dir):
    return full_batch(6)  # real 4:2:0 / 4:4:4 / grey ImageNet JPEGs, all 192 channels


@pytest.mark.parametrize("kernel", ["triangle", "bilinear"])
def test_resized_crop_all_coefficients_is_exact(batch, kernel):
    n, _, hb, wb = batch.shape
    boxes = resized_crop_params(hb * 8, wb * 8, n, torch.Generator().manual_seed(3))
    boxes[0] = torch.tensor([0, 0, hb * 8, wb * 8])  # the whole image, reduced
    boxes[1] = torch.tensor([17, 29, 37, 101])  # a small box: magnified, odd offsets
    size = (12, 10)
    got = resized_crop(torch.as_tensor(batch), ALL_NAMES, boxes, size, kernel)
    assert got.dtype == torch.float64 and got.shape == (n, 192, *size)
    ref = _reference(batch, boxes.tolist(), size, kernel)
    assert np.abs(ref).max() > 500
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-9)


def test_resized_crop_identity_box_and_int16_input(batch):
    _, _, hb, wb = batch.shape
    x = torch.as_tensor(batch[:2])
    boxes = torch.tensor([[0, 0, hb * 8, wb * 8]] * 2)
    same = resized_crop(x, ALL_NAMES, boxes, (hb, wb))
    np.testing.assert_allclose(same.numpy(), batch[:2], atol=1e-9)
    x16 = torch.as_tensor(np.rint(batch[:2]).astype(np.int16))
    boxes = torch.tensor([[5, 7, 200, 150], [0, 3, 300, 333]])
    got = resized_crop(x16, ALL_NAMES, boxes, (7, 7))
    assert got.dtype == torch.float32
    ref = resized_crop(x16.double(), ALL_NAMES, boxes, (7, 7))
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=0.02)


def test_triangle_kernel_is_pils_bilinear(batch):
    """The default kernel is the pixel path's filter, PIL's BILINEAR (float32 image, cropped
    first: a PIL source ``box`` also reads pixels beyond the box, torchvision does not)."""
    _, _, hb, wb = batch.shape
    t, lf, h, w = 13, 21, 8 * hb - 40, 8 * wb - 60
    box = torch.tensor([[t, lf, h, w]])
    got = resized_crop(torch.as_tensor(batch[:1]), ALL_NAMES, box, (8, 8))
    planes = []
    for p in pixels(batch[:1])[0]:
        im = Image.fromarray(p.astype(np.float32), mode="F")
        r = im.crop((lf, t, lf + w, t + h)).resize((64, 64), Image.BILINEAR)
        planes.append(np.asarray(r))
    ref = coefficients(np.stack(planes)[None].astype(np.float64))
    np.testing.assert_allclose(got.numpy(), ref, atol=0.05)


def test_resized_crop_rejects_bad_boxes(batch):
    x = torch.as_tensor(batch[:1])
    hb = batch.shape[2]
    for box in ([0, 0, 8 * hb + 1, 8], [-1, 0, 8, 8], [0, 0, 0, 8]):
        with pytest.raises(UsageError):
            resized_crop(x, ALL_NAMES, torch.tensor([box]), (2, 2))
    with pytest.raises(UsageError):
        resized_crop(x, ALL_NAMES, torch.tensor([[0, 0, 8, 8]]), (2, 2), kernel="lanczos")


# -- a preset's channels -----------------------------------------------------------------------
def _preset(name: str) -> tuple[list[str], list[int]]:
    p = PRESETS[name]
    names = [f"Y{k}" for k in p.y] + [f"Cb{k}" for k in p.cb] + [f"Cr{k}" for k in p.cr]
    idx = p.y + [64 + k for k in p.cb] + [128 + k for k in p.cr]
    return names, idx


@pytest.mark.parametrize("name", ["dctnet-24", "dctnet-32"])
def test_resized_crop_of_a_selection_is_the_low_pass_image(batch, name):
    """With a preset, the result is exactly the selected channels of the resized crop of the
    image the stored channels describe (the unstored ones 0)."""
    names, idx = _preset(name)
    n, _, hb, wb = batch.shape
    boxes = resized_crop_params(hb * 8, wb * 8, n, torch.Generator().manual_seed(9))
    low = np.zeros_like(batch)
    low[:, idx] = batch[:, idx]
    ref = resized_crop(torch.as_tensor(low), ALL_NAMES, boxes, (9, 11))[:, idx]
    got = resized_crop(torch.as_tensor(batch[:, idx]), names, boxes, (9, 11))
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-9)
    info = channel_info(names)
    assert got.shape[1] == len(info.k)


def test_random_resized_crop_module(batch):
    n, _, hb, wb = batch.shape
    rrc = RandomResizedCrop(ALL_NAMES, (4, 4), seed=7)
    y, boxes = rrc(torch.as_tensor(batch))
    expect = resized_crop_params(hb * 8, wb * 8, n, torch.Generator().manual_seed(7))
    assert boxes.tolist() == expect.tolist() and y.shape == (n, 192, 4, 4)
    sizes = torch.tensor([[100, 120]] * n)
    _, boxes = RandomResizedCrop(ALL_NAMES, (4, 4), seed=7)(torch.as_tensor(batch), sizes)
    assert bool((boxes[:, 0] + boxes[:, 2] <= 100).all())
    assert bool((boxes[:, 1] + boxes[:, 3] <= 120).all())


def test_imagenet_sample_is_present(data_dir):
    assert len(list(IMAGENET.glob("*.JPEG"))) >= 6


def test_preset_error_within_the_documented_bounds(data_dir):
    """docs/loader.md's dctnet-24 table (16 images), checked on 4 of its images."""
    from freqdata.bench.augment import measure_preset_error

    files = sorted(IMAGENET.glob("*.JPEG"))[::16][:4]
    rows = measure_preset_error(files, ["dctnet-24"], scales=(0.08, 1.0))["rows"]
    assert [r["scale"] for r in rows] == [0.08, 1.0]
    for row in rows:  # the table's worst: luma 0.147, chroma 0.168 (per image: more spread)
        assert 0.02 < row["luma_rel"] < 0.2 and 0.02 < row["chroma_rel"] < 0.2
        assert row["channel_rel"]["Y0"] < 0.1


def test_agrees_with_the_pixel_paths_random_resized_crop(data_dir):
    """Same boxes and flips as ``encode_image(..., path="pixels", rng=...)``: only JPEG decoding
    (8-bit rounding, libjpeg's chroma upsampling) and int16 rounding separate the two."""
    from freqdata.bench.augment import measure_pixel_agreement

    files = sorted(IMAGENET.glob("*.JPEG"))[::16][:2]
    for row in measure_pixel_agreement(files, seeds=(0,), crop=224)["rows"]:
        assert row["luma_mad"] < 1.0 and row["luma_rel"] < 0.05
        assert row["chroma_mad"] < 1.0 and row["chroma_rel"] < 0.15
