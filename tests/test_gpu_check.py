"""``freqdata gpu-check --cpu``: the dry run of every GPU step on the CPU at tiny sizes, end
to end (so the command cannot rot while no GPU is at hand), its JSON and markdown, one failing
step recorded without stopping the others, and bad usage."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from freqdata.bench import gpu_check
from freqdata.bench.gpu_check import STEPS, run_gpu_check
from freqdata.cli.main import app

runner = CliRunner()


def test_cpu_dry_run_end_to_end(tmp_path, data_dir):
    out = tmp_path / "gc"
    # the GPU tests of one file: collecting the whole suite takes longer than the rest
    res = run_gpu_check(out, cpu=True, data=data_dir, tests="tests/test_gpu.py")
    assert list(res["steps"]) == list(STEPS)
    assert {s: r["status"] for s, r in res["steps"].items()} == dict.fromkeys(STEPS, "ok"), res
    assert res["exit_status"] == 0 and res["mode"] == "cpu"
    assert json.loads((out / "gpu-check.json").read_text()) == json.loads(
        json.dumps(res, default=str))
    s = res["steps"]
    assert s["machine"]["result"]["torch"] == torch.__version__
    tests = s["gpu-tests"]["result"]
    assert tests["tests"] >= 5 and tests["failures"] == tests["errors"] == 0
    if not torch.cuda.is_available():
        assert tests["skipped"] == tests["tests"]
    assert s["bench-transfer"]["result"]["cuda"] is False
    assert s["bench-loader"]["result"]["rows"]
    assert s["bench-masks"]["result"]["rows"]
    arms = s["train-throughput"]["result"]["arms"]
    for arm in ("rgb-synthetic", "rgb-store", "dct-synthetic", "dct-store"):
        assert arms[arm]["images_per_s"] > 0 and arms[arm]["steps"] == 2, arm
    assert arms["dct-store"]["input_shape"] == [24, 16, 16]
    assert arms["rgb-store"]["input_shape"] == [3, 64, 64]
    md = (out / "gpu-check.md").read_text()
    for step in STEPS:
        assert f"| {step} | ok |" in md
    assert "| dct-store |" in md


def test_a_failing_step_is_recorded_and_the_rest_runs(tmp_path, data_dir, monkeypatch):
    monkeypatch.setitem(gpu_check.CPU.timeouts, "bench-transfer", 0.01)  # killed at once
    r = runner.invoke(app, ["gpu-check", str(tmp_path), "--cpu", "--data", str(data_dir),
                            "--step", "machine", "--step", "bench-transfer"])  # fmt: skip
    assert r.exit_code == 1, r.output
    res = json.loads((tmp_path / "gpu-check.json").read_text())
    assert res["steps"]["machine"]["status"] == "ok"
    assert res["steps"]["bench-transfer"]["status"] == "timeout"
    assert res["failed_steps"] == ["bench-transfer"]
    assert "| bench-transfer | timeout |" in r.output


def test_usage_errors(tmp_path):
    r = runner.invoke(app, ["gpu-check", str(tmp_path), "--cpu", "--step", "nope"])
    assert r.exit_code == 2 and "unknown step" in r.output
    if not torch.cuda.is_available():
        r = runner.invoke(app, ["gpu-check", str(tmp_path)])
        assert r.exit_code == 2 and "--cpu" in r.output


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")
def test_machine_names_the_gpu():
    info = gpu_check.machine_info()
    assert info["cuda_available"] and info["gpu"] and info["torch_cuda"]


def test_issue_mask_target_only_on_cuda():
    rows = {"torch-targets": {"masks_per_s": 2.5e6}}
    t = gpu_check._issue_mask_target({"rows": rows, "torch": {"device": "cuda:0"}})
    assert t["pass"] is True and t["value"] == 2.5e6 and t["limit"] == 1e6
    t = gpu_check._issue_mask_target({"rows": {"torch-targets": {"masks_per_s": 5e5}},
                                      "torch": {"device": "cuda:0"}})  # fmt: skip
    assert t["pass"] is False
    t = gpu_check._issue_mask_target({"rows": rows, "torch": {"device": "cpu"}})
    assert t["pass"] is None and t["value"] is None
