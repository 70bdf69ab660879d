"""Block DCT, zigzag and presets against independent references (scipy float64;
conventions: docs/conventions.md)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from conftest import COCO_VAL
from PIL import Image

from freqdata import dct, dct_torch
from freqdata.presets import PRESETS, resolve_preset

# docs/conventions.md, typed in by hand: JPEG's zigzag as natural indices.
JPEG_ZIGZAG = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
    20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58,
    59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]  # fmt: skip


def _real_luma(data_dir) -> np.ndarray:
    """A real luma plane (COCO image), cropped to whole blocks, uint8."""
    path = sorted(COCO_VAL.glob("*.jpg"))[3]
    y = np.array(Image.open(path).convert("L"))
    return y[: y.shape[0] // 8 * 8, : y.shape[1] // 8 * 8]


def _scipy_blocks(plane: np.ndarray) -> np.ndarray:
    """Reference: scipy.fft.dctn on each 8x8 block, float64 → (64, Hb, Wb) natural order."""
    h, w = plane.shape
    out = np.empty((64, h // 8, w // 8))
    x = plane.astype(np.float64) - 128.0
    for i in range(h // 8):
        for j in range(w // 8):
            c = scipy.fft.dctn(x[8 * i : 8 * i + 8, 8 * j : 8 * j + 8], norm="ortho")
            out[:, i, j] = c.reshape(64)  # row-major: index 8*v + u, v = row frequency
    return out


def test_dct_matrix_is_scipy_ortho():
    eye = np.eye(8)
    np.testing.assert_allclose(dct.dct_matrix(), scipy.fft.dct(eye, norm="ortho", axis=0))


def test_block_dct_matches_scipy_on_real_plane(data_dir):
    y = _real_luma(data_dir)
    ref = _scipy_blocks(y)
    np.testing.assert_allclose(dct.block_dct(y, dtype=np.float64), ref, atol=1e-9)
    np.testing.assert_allclose(dct.block_dct(y), ref, atol=2e-3)  # float32 GEMM
    # DC = 8 * mean(block - 128)
    blocks = y.reshape(y.shape[0] // 8, 8, y.shape[1] // 8, 8).astype(np.float64)
    np.testing.assert_allclose(ref[0], 8 * (blocks.mean(axis=(1, 3)) - 128), atol=1e-9)


def test_select_picks_natural_rows(data_dir):
    y = _real_luma(data_dir)
    sel = [9, 1, 8, 0, 63]
    np.testing.assert_allclose(
        dct.block_dct(y, sel, dtype=np.float64), _scipy_blocks(y)[sel], atol=1e-9
    )


def test_vertical_frequency_is_the_row_index():
    # horizontal stripes (vary with the row) put energy in v > 0, u = 0: index 8*v.
    plane = np.tile(np.array([0, 255] * 4, dtype=np.uint8)[:, None], (1, 8))
    coef = dct.block_dct(plane, dtype=np.float64)[:, 0, 0]
    assert abs(coef[8 * 7]) > 100 and abs(coef[7]) < 1e-9


def test_idct_round_trip(data_dir):
    y = _real_luma(data_dir)
    np.testing.assert_allclose(dct.block_idct(dct.block_dct(y, dtype=np.float64)), y, atol=1e-9)


def test_torch_twin_matches_numpy(data_dir):
    y = _real_luma(data_dir)
    ref = dct.block_dct(y, dtype=np.float64)
    got = dct_torch.block_dct(torch.from_numpy(y).to(torch.float64))
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-9)
    got32 = dct_torch.block_dct(torch.from_numpy(y)[None], [0, 9])  # uint8 in, batch dim
    assert got32.dtype == torch.float32 and got32.shape == (1, 2, *ref.shape[1:])
    np.testing.assert_allclose(got32[0].numpy(), ref[[0, 9]], atol=2e-3)
    back = dct_torch.block_idct(torch.from_numpy(ref))
    np.testing.assert_allclose(back.numpy(), y, atol=1e-9)


def test_non_block_plane_rejected():
    with pytest.raises(ValueError, match="whole number"):
        dct.block_dct(np.zeros((9, 8)))
    with pytest.raises(ValueError, match="whole number"):
        dct_torch.block_dct(torch.zeros(8, 12))


def test_zigzag_is_jpeg_table():
    assert dct.ZIGZAG.tolist() == JPEG_ZIGZAG
    # extended to K x K: a permutation, ordered by anti-diagonal, same walk direction
    z = dct.zigzag(128)
    assert sorted(z.tolist()) == list(range(128 * 128))
    v, u = np.divmod(z, 128)
    assert np.all(np.diff(v + u) >= 0)
    assert (v[:300] + u[:300]).max() == 23 and (v + u)[300] == 24  # N=300 = diagonals <= 23
    assert dct.zigzag(8).tolist() == JPEG_ZIGZAG


@pytest.mark.parametrize(
    ("name", "ny", "nc"),
    [("dctnet-6", 4, 1), ("dctnet-24", 16, 4), ("dctnet-32", 22, 5), ("dctnet-48", 32, 8),
     ("dctnet-64", 44, 10), ("all", 64, 64)],
)  # fmt: skip
def test_presets_sizes(name, ny, nc):
    p = PRESETS[name]
    assert (len(p.y), len(p.cb), len(p.cr)) == (ny, nc, nc)
    assert p.cb == p.cr
    assert p.channels == (192 if name == "all" else int(name.split("-")[-1]))
    assert len(set(p.y)) == ny and all(0 <= k < 64 for k in p.y + p.cb)


def test_preset_tables_verbatim():
    assert PRESETS["dctnet-24"].y == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27]
    assert PRESETS["dctnet-48"].y[-8:] == [32, 33, 34, 35, 40, 41, 42, 43]
    assert PRESETS["dctnet-64"].cb == [0, 1, 2, 8, 9, 10, 16, 17, 24, 25]
    assert PRESETS["dctnet-32"].cb == [0, 1, 2, 8, 9]


def test_zigzag_preset_and_errors():
    p = resolve_preset("zigzag-10-3")
    assert p.y == JPEG_ZIGZAG[:10] and p.cb == p.cr == [0, 1, 8]
    assert resolve_preset("dctnet-24") is PRESETS["dctnet-24"]
    for bad in ["dctnet-25", "zigzag-0-3", "zigzag-65-1", "zigzag-3"]:
        with pytest.raises(ValueError, match="unknown preset"):
            resolve_preset(bad)


def test_preset_json_files(tmp_path):
    """The gate's static selection (a JSON file) is usable wherever a preset name is."""
    (tmp_path / "sel.json").write_text('{"y": [0, 1, 8], "cb": [0], "cr": []}')
    p = resolve_preset(str(tmp_path / "sel.json"))
    assert p == ([0, 1, 8], [0], []) and p.channels == 4
    (tmp_path / "bad.json").write_text('{"y": [64], "cb": [], "cr": []}')
    for bad in ("bad.json", "missing.json"):
        with pytest.raises(ValueError, match="preset file"):
            resolve_preset(str(tmp_path / bad))
