"""Torch twins: equal to the numpy encoders (float64), and DCT-Mask targets from full masks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA

torch = pytest.importorskip("torch")

from freqdata.masks import (  # noqa: E402
    crop_resize,
    crop_resize_torch,
    dct_decode,
    dct_decode_torch,
    dct_encode,
    dct_encode_torch,
    full_image_masks,
    load_coco,
    load_instances,
    mask_iou,
    torch_targets,
)

VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"
IMAGES = [139, 350679, 217285, 183709]

DEVICES = ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)"),
])]  # fmt: skip


@pytest.fixture(scope="module")
def val(data_dir):
    return load_coco(VAL)


@pytest.fixture(scope="module")
def crop(val):
    return load_instances(val, k=128, method="crop", image_ids=IMAGES, include_crowd=True)


@pytest.fixture(scope="module")
def full(val, crop):
    return full_image_masks(val, crop.ann_ids)


@pytest.mark.parametrize("device", DEVICES)
def test_dct_twins_equal_numpy(crop, device):
    masks = crop.masks
    ref = dct_encode(masks, 300, dtype=np.float64)
    x = torch.from_numpy(masks).to(device)
    got = dct_encode_torch(x.double(), 300)
    assert got.dtype == torch.float64 and got.device.type == device
    np.testing.assert_allclose(got.cpu().numpy(), ref, atol=1e-12)
    got32 = dct_encode_torch(x, 300)  # uint8 → float32
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.cpu().numpy(), ref, atol=2e-4)
    lead = x[:94].bool().reshape(2, 47, 128, 128).double()
    np.testing.assert_allclose(
        dct_encode_torch(lead, 300).reshape(94, 300).cpu().numpy(), ref[:94], atol=1e-12
    )
    for n in (1, 100, 128 * 128):
        vec = dct_encode(masks[:8], n, dtype=np.float64)
        np.testing.assert_allclose(
            dct_encode_torch(x[:8].double(), n).cpu().numpy(), vec, atol=1e-11
        )
        dec = dct_decode_torch(torch.from_numpy(vec).to(device), 128)
        np.testing.assert_allclose(
            dec.cpu().numpy(), dct_decode(vec, 128, dtype=np.float64), atol=1e-11
        )
    full_rt = dct_decode_torch(dct_encode_torch(x[:4].double(), 128 * 128), 128)
    np.testing.assert_allclose(full_rt.cpu().numpy(), masks[:4], atol=1e-11)


def pad(full: list[np.ndarray]) -> np.ndarray:
    h = max(f.shape[0] for f in full)
    w = max(f.shape[1] for f in full)
    out = np.zeros((len(full), h, w), np.uint8)
    for i, f in enumerate(full):
        out[i, : f.shape[0], : f.shape[1]] = f
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ratio", [1, 2])
def test_crop_resize_torch_is_numpy_roialign(crop, full, device, ratio):
    boxes = crop.boxes_xyxy
    rng = np.random.default_rng(ratio)
    # ground-truth boxes and jittered "proposals", some sticking out of the image
    jitter = boxes + rng.normal(0, 8, boxes.shape)
    for b in (boxes, jitter):
        ref = np.stack(
            [crop_resize(f, bb, 32, sampling_ratio=ratio)[0] for f, bb in zip(full, b, strict=True)]
        )
        # masks of several image sizes zero-padded to one (H, W), with their true sizes
        got = crop_resize_torch(
            torch.from_numpy(pad(full)).to(device),
            torch.from_numpy(b).to(device),
            32,
            sampling_ratio=ratio,
            image_sizes=torch.tensor([f.shape for f in full]),
        )
        np.testing.assert_allclose(got.cpu().numpy(), ref, atol=1e-12)
        one = np.flatnonzero(crop.image_ids == crop.image_ids[0])  # one image: no padding
        got = crop_resize_torch(
            torch.from_numpy(np.stack([full[i] for i in one])).to(device),
            torch.from_numpy(b[one]).to(device),
            32,
            sampling_ratio=ratio,
        )
        np.testing.assert_allclose(got.cpu().numpy(), ref[one], atol=1e-12)
    # mask_index: three proposals per mask, masks as bool
    g = torch.from_numpy(pad(full)).bool().to(device)
    idx = torch.arange(len(full)).repeat_interleave(3).to(device)
    b3 = torch.from_numpy(np.repeat(jitter, 3, axis=0)).to(device)
    got = crop_resize_torch(g, b3, 32, sampling_ratio=ratio, mask_index=idx)
    ref = crop_resize_torch(g[idx], b3, 32, sampling_ratio=ratio)
    np.testing.assert_array_equal(got.cpu().numpy(), ref.cpu().numpy())


def test_torch_targets_equal_numpy_pipeline(crop, full):
    g = torch.from_numpy(pad(full))
    b = torch.from_numpy(crop.boxes_xyxy)  # float64 → float64 targets
    sizes = torch.tensor([f.shape for f in full])
    got = torch_targets(g, b, 128, 300, image_sizes=sizes)
    assert got.shape == (len(crop), 300) and got.dtype == torch.float64
    soft = np.stack(
        [
            crop_resize(f, bb, 128, sampling_ratio=1)[0]
            for f, bb in zip(full, crop.boxes_xyxy, strict=True)
        ]
    )
    np.testing.assert_allclose(
        got.numpy(), dct_encode(soft >= 0.5, 300, dtype=np.float64), atol=1e-11
    )
    f32 = torch_targets(g, b.float(), 128, 300)
    assert f32.dtype == torch.float32
    assert torch_targets(g, b.round().long(), 16, 10).dtype == torch.float32


def test_torch_targets_reproduce_crop_method(val):
    """Measured on the val subset (619 instances, K=128, n=300): mean IoU 0.980 between the
    decoded torch targets (ROIAlign, one sample per cell) and the "crop" method masks
    (adaptive sampling ratio, no DCT); the K x K targets before the DCT agree at 0.999."""
    crop = load_instances(val, k=128, method="crop")
    ious, raw = [], []
    for image_id in np.unique(crop.image_ids)[::2]:
        rows = np.flatnonzero(crop.image_ids == image_id)
        g = torch.from_numpy(np.stack(full_image_masks(val, crop.ann_ids[rows])))
        b = torch.from_numpy(crop.boxes_xyxy[rows]).float()
        vec = torch_targets(g, b, 128, 300)
        rec = dct_decode(vec.numpy(), 128) >= 0.5
        ious.append(mask_iou(rec, crop.masks[rows]))
        raw.append(mask_iou(crop_resize_torch(g, b, 128).numpy() >= 0.5, crop.masks[rows]))
    ious, raw = np.concatenate(ious), np.concatenate(raw)
    assert ious.mean() > 0.96, ious.mean()
    assert raw.mean() > 0.99, raw.mean()


def test_errors(crop, full):
    g = torch.from_numpy(pad(full))
    b = torch.from_numpy(crop.boxes_xyxy)
    with pytest.raises(ValueError):
        crop_resize_torch(g, b[:3], 16)  # G != M without mask_index
    with pytest.raises(ValueError):
        crop_resize_torch(g, b, 16, sampling_ratio=0)
    with pytest.raises(ValueError):
        crop_resize_torch(g, b[:3], 16, mask_index=torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        dct_encode_torch(torch.zeros(2, 8, 9), 3)
