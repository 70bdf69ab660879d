"""``freqdata bench transfer``: exact bytes, complete JSON, PNG, N/A without a GPU.

No timing assertions: figures are only checked to be present and positive.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from freqdata.bench import transfer
from freqdata.bench.transfer import BASELINE, DCT_PRESETS, quantize_int8, representations
from freqdata.cli.main import app

runner = CliRunner()

# (C, Y channels, chroma channels) of each preset, from docs/conventions.md
CHANNELS = {
    "dctnet-6": (6, 4, 2),
    "dctnet-24": (24, 16, 8),
    "dctnet-32": (32, 22, 10),
    "dctnet-48": (48, 32, 16),
    "dctnet-64": (64, 44, 20),
    "all": (192, 64, 128),
}


def _expected_bytes(estimated: bool) -> dict[str, int]:
    """Bytes per sample, written out independently of the implementation.

    int8: freqdata.transport's Int8Transport sends its per-channel scales once per run (0
    bytes per sample); the stand-in estimate (used when that module is missing) sends one
    float32 per channel per sample.
    """
    out = {
        "rgb224-uint8": 3 * 224 * 224,  # 150528
        "rgb448-uint8": 3 * 448 * 448,
        "rgb224-float32": 3 * 224 * 224 * 4,
    }
    for preset, (c, cy, cc) in CHANNELS.items():
        full, native = c * 56 * 56, cy * 56 * 56 + cc * 28 * 28
        for suffix, n in (("", full), ("-native", native)):
            out[f"{preset}{suffix}-int16"] = 2 * n
            out[f"{preset}{suffix}-float16"] = 2 * n
            out[f"{preset}{suffix}-int8"] = n + (4 * c if estimated else 0)
    return out


def _run(tmp_path: Path, *extra: str) -> tuple[Any, dict[str, Any]]:
    out = tmp_path / "transfer.json"
    png = tmp_path / "bytes.png"
    r = runner.invoke(app, ["bench", "transfer", "--batch-size", "3", "--repeats", "1",
                            "--peak-mib", "8", "--json", str(out), "--png", str(png),
                            "--label", "test", "--quiet", *extra])
    assert r.exit_code == 0, r.output
    return r, json.loads(out.read_text())


@pytest.mark.parametrize("estimated", [False, True])
def test_bytes_are_exact(estimated: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if estimated:
        monkeypatch.setattr(transfer, "_int8_codec", lambda: None)
    elif transfer._int8_codec() is None:
        pytest.skip("freqdata.transport (Int8Transport) is not importable")
    got = {name: rep.bytes_per_sample for name, rep in representations().items()}
    assert got == _expected_bytes(estimated)
    assert all(r.estimated == (estimated and r.family == "int8")
               for r in representations().values())
    assert got["rgb224-uint8"] == 150528 == got["dctnet-24-int16"]
    assert got["dctnet-24-native-int16"] == 2 * (16 * 3136 + 8 * 784) == 112896
    assert got["all-native-int16"] == got["rgb448-uint8"] == 602112


def test_cli_json_png_and_na_without_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "_cuda", lambda: None)  # a CPU machine, even on a GPU one
    r, result = _run(tmp_path)
    estimated = transfer._int8_codec() is None
    assert result["settings"]["compact_transport_estimated"] is estimated
    expected = _expected_bytes(estimated)
    rows = result["representations"]
    assert list(rows) == list(expected)  # every representation, in table order
    for name, row in rows.items():
        assert row["bytes_per_sample"] == expected[name], name
        assert row["bytes_ratio_to_baseline"] == pytest.approx(expected[name] / 150528,
                                                               abs=1e-6)
        assert row["prep_samples_per_s"] > 0 and row["prep_time_ratio_to_baseline"] > 0
        assert row["h2d_bytes_per_batch"] == 3 * expected[name]
        for key in ("h2d_pinned_gbps", "h2d_pageable_gbps", "pinned_pct_of_peak",
                    "e2e_samples_per_s", "e2e_ratio_to_baseline"):
            assert row[key] is None, (name, key)
        assert name in r.output
    assert rows[BASELINE]["prep_time_ratio_to_baseline"] == 1.0
    assert {p for p in DCT_PRESETS} == set(CHANNELS)

    # CPU mode says so, in the JSON and in the output
    assert result["cuda"] is False and result["gpu_figures"] == "N/A"
    assert "no CUDA device" in result["na_reason"]
    assert result["hardware"]["gpu"] is None and result["host"]["pinned_peak_gbps"] is None
    assert result["host"]["memcpy_gbps"] > 0
    assert "N/A" in r.output and "no GPU" in r.output

    targets = {t["name"]: t for t in result["targets"]}
    assert targets["h2d-vs-pinned-peak"]["pass"] is None
    t24 = targets["bytes-dctnet-24-int8"]
    if estimated:  # 96 bytes of per-sample scales tip it just over half
        assert t24["value"] == pytest.approx((24 * 3136 + 96) / 150528, abs=1e-6)
        assert t24["pass"] is False
    else:  # exactly half
        assert t24["value"] == 0.5 and t24["pass"] is True
    assert targets["bytes-dctnet-24-native-int8"]["pass"] is True
    assert result["all_targets_pass"] is (not estimated)  # the N/A target does not count
    assert "PASS" in r.output

    assert result["label"] == "test" and result["command"].startswith("freqdata bench transfer")
    assert result["settings"]["batch_size"] == 3
    assert result["settings"]["peak_copy_bytes"] == 8 * 2**20
    sw = result["software"]
    assert sw["numpy"] and sw["python"] and "torch" in sw

    with Image.open(tmp_path / "bytes.png") as im:
        assert im.format == "PNG" and im.width >= 800 and im.height >= 40 * 20


def test_device_cpu_and_bad_usage(tmp_path: Path) -> None:
    r, result = _run(tmp_path, "--device", "cpu")
    assert result["cuda"] is False and "--device cpu" in result["na_reason"]
    for args in (["--batch-size", "0"], ["--repeats", "0"], ["--device", "tpu"],
                 ["--peak-mib", "0"]):
        r = runner.invoke(app, ["bench", "transfer", "--quiet", *args])
        assert r.exit_code == 2, args


def test_device_cuda_without_gpu_is_bad_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "_cuda", lambda: None)
    r = runner.invoke(app, ["bench", "transfer", "--device", "cuda", "--quiet"])
    assert r.exit_code == 2 and "no CUDA device" in r.output


def test_quantize_int8_roundtrip() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 5, 8, 8)) * 300).astype(np.int16)
    x[1, 2] = 0  # an all-zero channel gets scale 1
    q = np.empty(x.shape, np.int8)
    s = np.empty((4, 5), np.float32)
    quantize_int8(list(x), q, s)
    assert s[1, 2] == 1 and not q[1, 2].any()
    assert np.abs(q).max() == 127
    err = np.abs(q * s[:, :, None, None] - x)
    assert (err <= s[:, :, None, None] / 2 + 1e-3).all()


class _FakeCuda:
    """torch.cuda stand-in whose 'device' is the CPU: runs the CUDA code path's logic."""

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def synchronize() -> None:
        return None

    @staticmethod
    def get_device_properties(i: int) -> SimpleNamespace:
        return SimpleNamespace(total_memory=80 * 2**30, multi_processor_count=1)

    @staticmethod
    def get_device_name(i: int) -> str:
        return "fake GPU (CPU tensors)"

    @staticmethod
    def get_device_capability(i: int) -> tuple[int, int]:
        return (0, 0)

    @staticmethod
    def device_count() -> int:
        return 1


class _FakeTorch:
    cuda = _FakeCuda
    version = SimpleNamespace(cuda="fake")

    def __getattr__(self, name: str) -> Any:
        import torch

        return getattr(torch, name)

    @staticmethod
    def empty(*shape: Any, dtype: Any = None, device: Any = None,
              pin_memory: bool = False) -> Any:
        import torch

        return torch.empty(*shape, dtype=dtype)


def test_gpu_code_path_logic_with_a_fake_device(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA branch (pinned/pageable copies, end to end, % of peak) on CPU tensors.

    Only the bookkeeping is checked here; real GPU figures come from running the command on
    a GPU machine.
    """
    pytest.importorskip("torch")
    monkeypatch.setattr(transfer, "_cuda", lambda: _FakeTorch())
    _r, result = _run(tmp_path)
    assert result["cuda"] is True and result["gpu_figures"] == "measured"
    assert result["hardware"]["gpu"]["name"].startswith("fake GPU")
    assert result["host"]["pinned_peak_gbps"] > 0
    for name, row in result["representations"].items():
        assert row["h2d_pinned_gbps"] > 0 and row["h2d_pageable_gbps"] > 0, name
        assert row["pinned_pct_of_peak"] > 0 and row["e2e_samples_per_s"] > 0, name
        assert row["h2d_bytes_per_batch"] == 3 * row["bytes_per_sample"], name
    assert result["representations"][BASELINE]["e2e_ratio_to_baseline"] == 1.0
    peak = {t["name"]: t for t in result["targets"]}["h2d-vs-pinned-peak"]
    assert isinstance(peak["pass"], bool)


def test_estimated_int8_when_transport_missing(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "_cuda", lambda: None)
    monkeypatch.setattr(transfer, "_int8_codec", lambda: None)
    r, result = _run(tmp_path)
    rows = result["representations"]
    assert result["settings"]["compact_transport_estimated"] is True
    assert rows["dctnet-24-int8"]["estimated"] is True
    assert rows["dctnet-24-int8"]["bytes_per_sample"] == 24 * 3136 + 24 * 4
    assert rows["dctnet-24-int16"]["estimated"] is False
    assert "FAIL" in r.output and "estimated" in r.output
