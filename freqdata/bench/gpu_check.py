"""``freqdata gpu-check OUT``: everything that needs CUDA, in one command, into one folder.

On a machine with an NVIDIA GPU (docs/gpu.md), in about 8 minutes, each step a separate
process with its own time limit (one failing step never stops the others):

1. ``machine``: GPU model, driver, CUDA, cuDNN, torch and DALI versions, CPU;
2. ``stores``: a DCT store (dctnet-24, ``resnet`` geometry: 56 x 56 blocks) and an RGB store
   (``256:224``) of the same JPEGs (default: ``imagenet-sample`` of the test data, else
   ``examples/images``);
3. ``gpu-tests``: ``pytest -m gpu`` (DALI ``mixed`` vs the CPU pixel path, device
   transforms, torch DCT and mask encoder on CUDA vs their CPU/numpy results);
4. ``bench-transfer``: ``freqdata bench transfer --device cuda``;
5. ``bench-loader``: ``freqdata bench loader DCT_STORE --device cuda``;
6. ``bench-masks``: ``freqdata bench masks`` on the COCO annotations with the torch rows
   on CUDA (target >= 1,000,000 masks/s for 300 coefficients at K = 128);
7. ``train-throughput``: ResNet-50 RGB-224 vs DCT-24 (56 x 56) training images/s with bf16
   and channels_last, from the stores through the loaders and from DALI
   (:mod:`freqdata.bench.train_throughput`).

Writes ``OUT/gpu-check.json`` (every step: command, status, seconds, its result), a
markdown summary ``OUT/gpu-check.md`` and each step's output (``OUT/<step>.log``, JSON
results). ``cpu=True`` runs the same steps on the CPU at tiny sizes (4 images, 2 timed
steps, small benchmarks) — what CI runs, so the command cannot rot without a GPU.

A step's ``status``: ``ok``, ``failed`` (non-zero exit, with the log's tail), ``timeout``,
or ``skipped`` (with the reason, e.g. no COCO annotations). The command's exit status is 0
when no step failed or timed out, 1 otherwise.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freqdata.errors import UsageError

__all__ = ["STEPS", "Sizes", "machine_info", "run_gpu_check"]

STEPS = ("machine", "stores", "gpu-tests", "bench-transfer", "bench-loader", "bench-masks",
         "train-throughput")  # fmt: skip
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Sizes:
    """How big each step is: the GPU run, or the tiny CPU dry run."""

    images: int
    rgb_geometry: str
    dct_geometry: str
    transfer: list[str]
    loader: list[str]
    masks: list[str]
    mask_images: int | None  # COCO images kept for bench masks (None: all)
    throughput: list[str]
    timeouts: dict[str, int]  # seconds per step


GPU = Sizes(
    images=250, rgb_geometry="256:224", dct_geometry="resnet",
    transfer=["--device", "cuda", "--repeats", "5"],
    loader=["--device", "cuda", "--seconds", "2", "--repeats", "1", "--batch-size", "128",
            "--workers", "2"],
    masks=["--device", "cuda", "--k", "128", "--n", "300", "--repeats", "3"],
    mask_images=None,
    throughput=["--batch-size", "64", "--warmup", "5", "--steps", "20", "--threads", "8"],
    timeouts={"stores": 90, "gpu-tests": 150, "bench-transfer": 60, "bench-loader": 120,
              "bench-masks": 60, "train-throughput": 150},
)  # fmt: skip
CPU = Sizes(
    images=4, rgb_geometry="72:64", dct_geometry="144:128",
    transfer=["--device", "cpu", "--repeats", "1", "--batch-size", "4", "--peak-mib", "4"],
    loader=["--device", "cpu", "--seconds", "0.2", "--repeats", "1", "--batch-size", "2",
            "--workers", "0"],
    masks=["--device", "cpu", "--k", "32", "--n", "64", "--repeats", "1"],
    mask_images=2,
    throughput=["--batch-size", "2", "--warmup", "1", "--steps", "2", "--threads", "1",
                "--width", "8", "--device", "cpu"],
    # generous: a safety net on a busy CI machine, not a speed check
    timeouts={"stores": 900, "gpu-tests": 900, "bench-transfer": 900, "bench-loader": 900,
              "bench-masks": 900, "train-throughput": 900},
)  # fmt: skip


def _version(module: str) -> str | None:
    try:
        mod = __import__(module, fromlist=["__version__"])
    except ImportError:
        return None
    return str(getattr(mod, "__version__", "?"))


def _nvidia_smi() -> dict[str, str] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    q = "name,driver_version,memory.total,pci.bus_id"
    try:
        out = subprocess.run([exe, f"--query-gpu={q}", "--format=csv,noheader"], text=True,
                             capture_output=True, timeout=30, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.strip().splitlines()[0] if out.strip() else ""
    return dict(zip(q.split(","), (v.strip() for v in first.split(",")), strict=False))


def machine_info() -> dict[str, Any]:
    """GPU (model, driver, memory from ``nvidia-smi``; CUDA and cuDNN of torch), torch, DALI
    and the CPU side (:func:`freqdata.bench.decode.hardware_info`, ``software_info``)."""
    import torch

    from freqdata.bench.decode import hardware_info, software_info

    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {
        "cuda_available": cuda,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "dali": _version("nvidia.dali"),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "nvidia_smi": _nvidia_smi(),
        "hardware": hardware_info(),
        "software": software_info(),
    }
    if cuda:
        p = torch.cuda.get_device_properties(0)
        info["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
        info["compute_capability"] = f"{p.major}.{p.minor}"
    return info


def _images(data: Path | None, n: int) -> list[str]:
    """``n`` JPEGs: the test data's ImageNet sample, else the repository's examples."""
    from freqdata.sources import list_sources

    for folder in ([data / "imagenet-sample" / "images"] if data else []) + [
            REPO / "examples" / "images"]:  # fmt: skip
        if folder.is_dir():
            paths = list(list_sources(folder).paths)
            if paths:
                return paths[:n]
    raise UsageError("no JPEGs found: give --data (the test data folder)")


def _make_stores(out: Path, data: Path | None, sizes: Sizes) -> dict[str, Any]:
    from freqdata.job import EncodeOptions, encode_images
    from freqdata.sources import Sources
    from freqdata.store.rgb import encode_rgb

    paths = _images(data, sizes.images)
    classes = [f"c{i}" for i in range(10)]
    src = Sources(paths, [i % 10 for i in range(len(paths))], classes)
    listing = out / "images.txt"
    listing.write_text("".join(f"{p}\t{i % 10}\n" for i, p in enumerate(paths)))
    dct, rgb = out / "stores" / "dct.zarr", out / "stores" / "rgb.zarr"
    workers = 0 if sizes.images <= 8 else min(8, os.cpu_count() or 1)
    encode_images(src, dct, EncodeOptions("dctnet-24", "pixels", sizes.dct_geometry),
                  workers=workers, overwrite=True)  # fmt: skip
    encode_rgb(src, rgb, sizes.rgb_geometry, overwrite=True)
    return {"images": len(paths), "dct_store": str(dct), "rgb_store": str(rgb),
            "listing": str(listing), "dct_geometry": sizes.dct_geometry,
            "rgb_geometry": sizes.rgb_geometry}  # fmt: skip


def _mask_annotations(out: Path, data: Path | None, n_images: int | None) -> Path | None:
    """The COCO-mini val annotations, cut to the first ``n_images`` images (None: all)."""
    if data is None:
        return None
    ann = data / "coco" / "coco-mini" / "instances_val2017.json"
    if not ann.is_file():
        return None
    if n_images is None:
        return ann
    d = json.loads(ann.read_text())
    keep = {im["id"] for im in sorted(d["images"], key=lambda im: im["id"])[:n_images]}
    d["images"] = [im for im in d["images"] if im["id"] in keep]
    d["annotations"] = [a for a in d["annotations"] if a["image_id"] in keep]
    path = out / "instances-subset.json"
    path.write_text(json.dumps(d))
    return path


def _junit(path: Path) -> dict[str, int] | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def _run(step: str, cmd: list[str], out: Path, timeout: float) -> dict[str, Any]:
    """Run ``cmd`` (from the repository root), its output into ``OUT/<step>.log``."""
    log = out / f"{step}.log"
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env,
                                timeout=timeout).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            rc = None
    rec: dict[str, Any] = {"command": cmd, "seconds": round(time.perf_counter() - t0, 2),
                           "log": log.name}  # fmt: skip
    if rc is None:
        rec["status"] = "timeout"
        rec["reason"] = f"killed after {timeout:.0f} s"
    else:
        rec["status"] = "ok" if rc == 0 else "failed"
        rec["exit_status"] = rc
    if rec["status"] != "ok":
        rec["tail"] = log.read_text(errors="replace")[-2000:]
    return rec


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


#: issue 17's target for the torch mask encoder on a GPU (300 coefficients at K = 128)
TARGET_CUDA_MASKS_PER_S = 1_000_000.0


def _issue_mask_target(result: dict[str, Any]) -> dict[str, Any]:
    """The ``torch-targets`` row (crop, resize and DCT of every mask, on CUDA) against
    :data:`TARGET_CUDA_MASKS_PER_S`, in ``bench masks``' target format."""
    row = result.get("rows", {}).get("torch-targets") or {}
    on_gpu = (result.get("torch") or {}).get("device", "").startswith("cuda")
    value = row.get("masks_per_s") if on_gpu else None
    return {"name": "issue17-cuda-masks", "row": "torch-targets", "value": value,
            "limit": TARGET_CUDA_MASKS_PER_S,
            "pass": None if value is None else value >= TARGET_CUDA_MASKS_PER_S,
            "text": f"torch-targets >= {TARGET_CUDA_MASKS_PER_S:,.0f} masks/s on CUDA "
                    f"(300 coefficients, K = 128)"}  # fmt: skip


def _target(t: dict[str, Any]) -> str:
    """``PASS``/``FAIL``/``N/A`` and the text of one benchmark target."""
    tag = "N/A" if t.get("pass") is None else "PASS" if t["pass"] else "FAIL"
    value = "" if t.get("value") is None else f" ({t['value']:.4g}, limit {t['limit']:.4g})"
    return f"{tag} {t.get('text', t.get('name'))}{value}"


def _summary(step: str, rec: dict[str, Any]) -> str:
    """One line of key figures of a step's result for the markdown table."""
    r = rec.get("result")
    if rec["status"] != "ok":
        return (rec.get("reason") or (rec.get("tail") or "").strip().splitlines()[-1:] or [""])[
            -1][:160].replace("|", "/")  # fmt: skip
    if step == "machine":
        return (f"{r['gpu'] or 'no GPU'}; driver {(r['nvidia_smi'] or {}).get('driver_version')}"
                f"; CUDA {r['torch_cuda']}; torch {r['torch']}; DALI {r['dali']}")
    if step == "stores":
        return f"{r['images']} images, DCT {r['dct_geometry']}, RGB {r['rgb_geometry']}"
    if step == "gpu-tests" and r:
        return ", ".join(f"{k} {v}" for k, v in r.items() if k != "tests")
    if step in ("bench-transfer", "bench-masks") and r:
        return "; ".join(_target(t) for t in r.get("targets", []))[:400] or "done"
    if step == "bench-loader" and r:
        rows = r.get("rows", {})
        best = max(rows.items(), key=lambda kv: kv[1].get("samples_per_s", 0), default=None)
        return f"best {best[0]}: {best[1]['samples_per_s']:.0f} samples/s" if best else "done"
    if step == "train-throughput" and r:
        return ", ".join(f"{a} {v['images_per_s']:.0f}/s" if "images_per_s" in v else
                         f"{a} not run" for a, v in r["arms"].items())  # fmt: skip
    return "done"


def render_markdown(result: dict[str, Any]) -> str:
    """The summary table (one row per step) and the training-throughput table."""
    lines = [f"# freqdata gpu-check ({result['mode']}), {result['started']}", "",
             "| step | status | seconds | result |", "|---|---|---:|---|"]  # fmt: skip
    for step, rec in result["steps"].items():
        lines.append(f"| {step} | {rec['status']} | {rec.get('seconds', 0):.1f} | "
                     f"{_summary(step, rec)} |")
    tp = result["steps"].get("train-throughput", {}).get("result")
    if tp:
        from freqdata.bench.train_throughput import render_markdown as throughput_table

        lines += ["", throughput_table(tp)]
    lines += ["", f"Total {result['seconds']:.0f} s. Exit status {result['exit_status']}."]
    return "\n".join(lines) + "\n"


def run_gpu_check(
    out: str | Path,
    *,
    cpu: bool = False,
    data: str | Path | None = None,
    steps: tuple[str, ...] = STEPS,
    tests: str = "tests",
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the steps (module docstring) into the folder ``out`` (created; replaced files);
    returns the result written to ``out/gpu-check.json``.

    ``cpu``: the dry run on the CPU at tiny sizes. Without it CUDA must be available
    (:class:`UsageError` otherwise). ``data``: the test data folder (default
    ``$FREQDATA_DATA``, else ``../shared/data`` beside the repository; without it the
    stores use ``examples/images`` and bench masks is skipped). ``tests``: what
    ``pytest -m gpu`` collects. ``echo`` receives one line per finished step.
    """
    import torch

    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise UsageError(f"unknown step(s) {', '.join(bad)}: choose among {', '.join(STEPS)}")
    if not cpu and not torch.cuda.is_available():
        raise UsageError("no CUDA device (torch.cuda.is_available() is False): run on a GPU "
                         "machine (docs/gpu.md) or pass --cpu for the dry run")  # fmt: skip
    sizes = CPU if cpu else GPU
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = os.environ.get("FREQDATA_DATA", REPO.parent / "shared" / "data")
    data_dir: Path | None = Path(data) if Path(data).is_dir() else None
    py = sys.executable
    cli = [py, "-m", "freqdata.cli"]
    t_start = time.perf_counter()
    result: dict[str, Any] = {
        "mode": "cpu" if cpu else "cuda",
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "data": str(data_dir) if data_dir else None,
        "steps": {},
    }
    stores: dict[str, Any] | None = None

    def done(step: str, rec: dict[str, Any]) -> None:
        result["steps"][step] = rec
        if echo is not None:
            echo(f"{step}: {rec['status']} ({rec.get('seconds', 0):.1f} s) {_summary(step, rec)}")

    def in_process(fn: Callable[[], Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            rec: dict[str, Any] = {"status": "ok", "result": fn()}
        except Exception as e:  # recorded: one step never stops the others
            rec = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        return rec

    needs_stores = {"stores", "bench-loader", "train-throughput"}
    for step in steps:
        if step == "machine":
            done(step, in_process(machine_info))
        elif step == "stores" or (step in needs_stores and stores is None
                                  and "stores" not in result["steps"]):  # fmt: skip
            rec = in_process(lambda: _make_stores(out, data_dir, sizes))
            stores = rec.get("result")
            done("stores", rec)
        if step in ("machine", "stores"):
            continue
        limit = sizes.timeouts[step]
        if step == "gpu-tests":
            xml = out / "gpu-tests.xml"
            # its own basetemp: a new numbered one would rotate out those of other pytest runs
            rec = _run(step, [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                              f"--basetemp={out / 'pytest-tmp'}", f"--junitxml={xml}", tests],
                       out, limit)  # fmt: skip
            rec["result"] = _junit(xml)
            if rec.get("exit_status") == 5:  # nothing collected: no GPU test selected
                rec["status"], rec["reason"] = "failed", "no test marked gpu was collected"
        elif step == "bench-transfer":
            js = out / "bench-transfer.json"
            rec = _run(step, [*cli, "bench", "transfer", *sizes.transfer, "--quiet",
                              "--json", str(js)], out, limit)  # fmt: skip
            rec["result"] = _load(js)
        elif step == "bench-loader":
            if stores is None:
                done(step, {"status": "skipped", "reason": "no stores (step stores failed)"})
                continue
            js = out / "bench-loader.json"
            rec = _run(step, [*cli, "bench", "loader", stores["dct_store"], *sizes.loader,
                              "--quiet", "--json", str(js)], out, limit)  # fmt: skip
            rec["result"] = _load(js)
        elif step == "bench-masks":
            ann = _mask_annotations(out, data_dir, sizes.mask_images)
            if ann is None:
                done(step, {"status": "skipped", "reason": "no COCO annotations (--data)"})
                continue
            js = out / "bench-masks.json"
            rec = _run(step, [*cli, "bench", "masks", str(ann), *sizes.masks, "--json",
                              str(js)], out, limit)  # fmt: skip
            rec["result"] = _load(js)
            if rec["result"] and not cpu:
                rec["result"]["targets"].append(_issue_mask_target(rec["result"]))
        else:  # train-throughput
            if stores is None:
                done(step, {"status": "skipped", "reason": "no stores (step stores failed)"})
                continue
            js = out / "train-throughput.json"
            rec = _run(step, [py, "-m", "freqdata.bench.train_throughput",
                              "--rgb-store", stores["rgb_store"],
                              "--dct-store", stores["dct_store"],
                              "--images", stores["listing"],
                              "--rgb-geometry", sizes.rgb_geometry,
                              "--dct-geometry", sizes.dct_geometry,
                              *sizes.throughput, "--json", str(js)], out, limit)  # fmt: skip
            rec["result"] = _load(js)
        done(step, rec)
    bad_steps = [s for s, r in result["steps"].items() if r["status"] in ("failed", "timeout")]
    result["failed_steps"] = bad_steps
    result["exit_status"] = 1 if bad_steps else 0
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "gpu-check.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "gpu-check.md").write_text(render_markdown(result))
    return result
