"""CUDA results equal the CPU / numpy ones (``pytest -m gpu``; ``freqdata gpu-check`` runs
them): every deterministic device transform, the torch block DCT, the device transfer of a
pinned batch, and the DALI GPU pipeline against the CPU pixel path. Skipped without an
NVIDIA GPU. (The mask encoder on CUDA: tests/test_masks_torch.py's ``cuda`` cases; the DALI
GPU pipeline against DALI's CPU pipeline: tests/test_dali.py.)

Random transforms (random crops and flips) are not compared across devices: a
``torch.Generator`` on CUDA draws other numbers than one on the CPU with the same seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ANTS_BEES, COCO_VAL

from freqdata import encode_image, open_store
from freqdata.dct import block_dct, block_idct
from freqdata.job import EncodeOptions, encode_images
from freqdata.loader import StoreDataset, to_device
from freqdata.pixels import load_ycbcr
from freqdata.sources import Sources
from freqdata.transforms import (
    DeviceAugment,
    Normalize,
    center_crop,
    channel_info,
    hflip,
    upsample_chroma,
)
from freqdata.transport import Int8Transport

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)"),
]
CUDA = "cuda"
# float32 on the GPU vs the CPU: the same operations, possibly another summation order
F32 = {"rtol": 1e-5, "atol": 1e-4}


@pytest.fixture(scope="module")
def fixed(tmp_path_factory, data_dir):
    """8 real ants/bees images as a dctnet-24 store at 96:80 (10 x 10 blocks) and its cubes."""
    files = sorted((ANTS_BEES / "val").rglob("*.jpg"))[:8]
    out = tmp_path_factory.mktemp("gpu") / "f.zarr"
    encode_images(Sources([str(p) for p in files], [0] * 8, ["x"]), out,
                  EncodeOptions("dctnet-24", "pixels", "96:80"))  # fmt: skip
    store = open_store(out)
    return store, StoreDataset(store).read_batch(range(len(store)))["cubes"]


def _both(fn, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``fn`` on the CPU and on CUDA (result brought back to the CPU)."""
    return fn(*tensors), fn(*(t.to(CUDA) for t in tensors)).cpu()


def test_deterministic_transforms_on_cuda_equal_cpu(fixed):
    store, cubes = fixed
    x = cubes.float()
    odd = channel_info(store.channel_names).odd_u("cpu")
    for fn in (
        lambda t: Normalize.from_store(store, t.device)(t),
        lambda t: center_crop(t, (6, 6)),
        lambda t: hflip(t, odd.to(t.device)),
    ):
        cpu, gpu = _both(fn, x)
        torch.testing.assert_close(gpu, cpu, **F32)
    batch = {"cubes": cubes, "labels": torch.arange(len(cubes))}
    ref, lab = DeviceAugment(store, "cpu", train=False, crop=(8, 8))(batch)
    got, glab = DeviceAugment(store, CUDA, train=False, crop=(8, 8))(batch)
    assert got.is_cuda and torch.equal(glab.cpu(), lab)
    torch.testing.assert_close(got.cpu(), ref, **F32)
    t = Int8Transport.from_store(store)
    q = t.encode(cubes)
    cpu, gpu = _both(t.decode_normalized, q)
    torch.testing.assert_close(gpu, cpu, **F32)


def test_upsample_chroma_on_cuda_equals_cpu(data_dir):
    path = ANTS_BEES / "train" / "ants" / "175998972.jpg"  # subsampled chroma
    luma, chroma = encode_image(path, "all", chroma="native")
    f = (luma.shape[1] // chroma.shape[1], luma.shape[2] // chroma.shape[2])
    assert f != (1, 1)
    c = torch.from_numpy(chroma)[None].float()
    cpu, gpu = _both(lambda t: upsample_chroma(t, f, range(64), luma.shape[1:]), c)
    torch.testing.assert_close(gpu, cpu, rtol=1e-5, atol=1e-3)  # coefficient units


def test_torch_dct_on_cuda_equals_numpy(data_dir):
    from freqdata import dct_torch

    path = sorted(COCO_VAL.glob("*.jpg"))[3]
    y = np.ascontiguousarray(load_ycbcr(path).planes[0])  # (H, W) uint8, whole blocks
    ref = block_dct(y, dtype=np.float64)
    got = dct_torch.block_dct(torch.from_numpy(y).double().to(CUDA))
    np.testing.assert_allclose(got.cpu().numpy(), ref, atol=1e-9)
    back = dct_torch.block_idct(torch.from_numpy(ref).to(CUDA))
    np.testing.assert_allclose(back.cpu().numpy(), block_idct(ref), atol=1e-9)
    f32 = dct_torch.block_dct(torch.from_numpy(y)[None].to(CUDA), [0, 9])
    np.testing.assert_allclose(f32[0].cpu().numpy(), ref[[0, 9]], atol=2e-3)


def test_pinned_batch_reaches_the_device_unchanged(fixed):
    _, cubes = fixed
    pinned = {"cubes": cubes.pin_memory(), "labels": torch.arange(len(cubes)).pin_memory()}
    moved = to_device(pinned, CUDA)
    torch.cuda.synchronize()
    assert moved["cubes"].is_cuda and torch.equal(moved["cubes"].cpu(), cubes)
    assert torch.equal(moved["labels"].cpu(), torch.arange(len(cubes)))


def test_dali_gpu_pipeline_matches_the_pixel_path(data_dir):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI not installed")
    from test_dali import GPU_CPU_TOL, PIXEL_PATH_TOL, assert_near_pixel_path

    from freqdata.dali import DaliCubeLoader

    # DALI's CPU pipeline vs the pixel path (PIXEL_PATH_TOL) and its GPU vs CPU pipeline
    # (GPU_CPU_TOL): the GPU pipeline vs the pixel path is within their sum (triangle
    # inequality), which is what is asserted here.
    tol = {name: (mean + GPU_CPU_TOL[0], mx + GPU_CPU_TOL[1])
           for name, (mean, mx) in PIXEL_PATH_TOL.items()}  # fmt: skip

    files = [str(p) for p in sorted(COCO_VAL.glob("*.jpg"))[:10]]
    files += [str(p) for p in sorted((ANTS_BEES / "val" / "bees").glob("*.jpg"))[:6]]
    loader = DaliCubeLoader(files, "all", "resnet", batch_size=8, num_threads=2, device="gpu")
    got = np.concatenate([b["cubes"].cpu().numpy() for b in loader]).astype(np.float64)
    ref = np.stack([encode_image(f, "all", "pixels", "resnet") for f in files]).astype(np.float64)
    assert got.shape == ref.shape == (16, 192, 56, 56)
    assert_near_pixel_path(got, ref, tol)
