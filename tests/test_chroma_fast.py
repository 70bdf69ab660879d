"""The chroma fast path (only the selected outputs, a fixed map per block in C) against the
previous full computation: float64 GEMMs over all blocks, rounded with numpy, on real files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import simplejpeg
from conftest import ANTS_BEES, COCO_VAL, IMAGENET, ZOO
from PIL import Image

from freqdata.coefficients import (
    EXIF_ORIENTATIONS,
    _orient_grid,
    _oriented_source,
    component_cube,
    upsample_matrix,
)
from freqdata.errors import UsageError
from freqdata.jpeg import JpegCoefficients, JpegError, read_coefficients
from freqdata.presets import resolve_preset

DCTNET_CHROMA = resolve_preset("dctnet-24").cb  # [0, 1, 8, 9]
SELECTIONS = {
    "dctnet-24": DCTNET_CHROMA,
    "all": list(range(64)),
    "scattered": [63, 0, 7, 56, 9, 36, 18, 27],  # any order, any frequencies
}


def _old_upsampled(
    plane: np.ndarray, select: np.ndarray, weights: np.ndarray, fv: int, fh: int
) -> np.ndarray:
    """The previous computation, kept as the reference: every output block of the upsampled
    plane from one float64 GEMM per phase, ``(Hb*fv, Wb*fh, C)`` float64, not rounded."""
    hb, wb, _ = plane.shape
    src = plane.reshape(hb * wb, 64).astype(np.float64)
    out = np.empty((hb, fv, wb, fh, len(select)))
    for i in range(fv):
        for j in range(fh):
            lin = np.kron(upsample_matrix(fv, i), upsample_matrix(fh, j))[select]
            out[:, i, :, j] = (src @ (lin.T * weights)).reshape(hb, wb, -1)
    return out.reshape(hb * fv, wb * fh, len(select))


def _old_cube(coefs: JpegCoefficients, comp: int, select, orient: bool = True) -> np.ndarray:
    """``component_cube(coefs, comp, select, upsample=True)`` as it was computed before."""
    select = np.asarray(select, dtype=np.int64)
    o = EXIF_ORIENTATIONS.get(coefs.orientation, EXIF_ORIENTATIONS[1]) if orient else None
    src, sign = _oriented_source(select, o) if o else (select, np.ones(len(select)))
    (hy, vy), (hc, vc) = coefs.sampling[0], coefs.sampling[comp]
    luma = coefs.planes[0]
    up = _old_upsampled(coefs.planes[comp], src, sign, vy // vc, hy // hc)
    grid = np.clip(np.rint(up[: luma.shape[0], : luma.shape[1]]), -32768, 32767)
    grid = grid.astype(np.int16)
    if o:
        grid = _orient_grid(grid, o)
    return np.ascontiguousarray(grid.transpose(2, 0, 1))


def _subsampled(paths) -> list:
    """The files among ``paths`` with subsampled chroma (4:2:0, 4:2:2, 4:4:0, ...)."""
    found = []
    for p in paths:
        try:
            coefs = read_coefficients(p)
        except JpegError:  # the zoo's 12-bit, lossless, CMYK, damaged files
            continue
        if len(coefs.planes) == 3 and coefs.sampling[1] != coefs.sampling[0]:
            found.append(p)
    return found


def _check(coefs: JpegCoefficients, orient: bool = False) -> None:
    for name, select in SELECTIONS.items():
        for comp in (1, 2):
            got = component_cube(coefs, comp, select, upsample=True, orient=orient)
            ref = _old_cube(coefs, comp, select, orient=orient)
            assert got.dtype == np.int16 and got.flags.c_contiguous, name
            np.testing.assert_array_equal(got, ref, err_msg=f"{name}, component {comp}")


@pytest.mark.parametrize("folder", ["imagenet", "ants-bees", "zoo"])
def test_fast_chroma_equals_full_computation(data_dir, folder):
    """Every real subsampled file we have (ImageNet 4:2:0 and 4:2:2; ants/bees 4:2:0,
    4:2:2, 4:4:0, progressive; the zoo's libjpeg-turbo test images, arithmetic coding)."""
    root = {"imagenet": IMAGENET, "ants-bees": ANTS_BEES, "zoo": ZOO}[folder]
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    files = _subsampled(p for p in sorted(root.rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg"))
    samplings = {read_coefficients(p).sampling for p in files}
    assert ((2, 2), (1, 1), (1, 1)) in samplings  # 4:2:0 is covered in every folder
    if folder != "zoo":
        assert ((2, 1), (1, 1), (1, 1)) in samplings  # ... and 4:2:2 in ImageNet / ants-bees
    for p in files:
        _check(read_coefficients(p))


@pytest.mark.parametrize("subsampling", ["411", "440", "420", "422"])
def test_fast_chroma_equals_full_computation_reencoded(data_dir, subsampling):
    """4:1:1 (x4 horizontally) exists in none of the data: libjpeg-turbo makes it (and the
    others, at an odd size) from a real photo."""
    rgb = np.asarray(Image.open(COCO_VAL / "000000000139.jpg").convert("RGB"))[:413, :601]
    data = simplejpeg.encode_jpeg(
        np.ascontiguousarray(rgb), quality=95, colorsubsampling=subsampling
    )
    coefs = read_coefficients(data)
    assert coefs.sampling[1] != coefs.sampling[0]
    _check(coefs)


@pytest.mark.parametrize("orientation", [2, 5, 6, 7, 8])
def test_fast_chroma_with_orientation(data_dir, orientation):
    coefs = read_coefficients(ZOO / "pillow" / f"hopper_orientation_{orientation}.jpg")
    assert coefs.orientation == orientation and coefs.sampling[1] != coefs.sampling[0]
    _check(coefs, orient=True)


def test_fast_chroma_saturates_like_numpy(data_dir):
    """Coefficients at the int16 limits (a hostile file can hold them): outputs beyond int16
    saturate exactly as numpy's clip did."""
    coefs = read_coefficients(ANTS_BEES / "train/ants/175998972.jpg")
    rng = np.random.default_rng(0)
    planes = [
        p if c == 0 else rng.choice(np.array([-32768, 32767, 0], np.int16), size=p.shape)
        for c, p in enumerate(coefs.planes)
    ]
    loud = dataclasses.replace(coefs, planes=tuple(planes))
    got = component_cube(loud, 1, range(64), upsample=True)
    assert (got == 32767).any() and (got == -32768).any()
    _check(loud)


@pytest.mark.parametrize("orientation", [1, 6])
def test_out_receives_the_cube(data_dir, orientation):
    """``out=`` (a channel slice of a bigger cube) gets exactly the returned cube; a wrong
    shape is refused."""
    name = "hopper.jpg" if orientation == 1 else f"hopper_orientation_{orientation}.jpg"
    coefs = read_coefficients(ZOO / "pillow" / name)
    for comp, upsample in ((0, False), (1, True), (2, False)):
        ref = component_cube(coefs, comp, DCTNET_CHROMA, upsample=upsample)
        big = np.full((9, *ref.shape[1:]), 7, dtype=np.int16)
        got = component_cube(coefs, comp, DCTNET_CHROMA, upsample=upsample, out=big[2:6])
        np.testing.assert_array_equal(big[2:6], ref)
        assert np.shares_memory(got, big) and (big[:2] == 7).all() and (big[6:] == 7).all()
    with pytest.raises(UsageError):
        component_cube(coefs, 1, DCTNET_CHROMA, upsample=True, out=big[:3])
