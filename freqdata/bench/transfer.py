"""``freqdata bench transfer``: bytes per sample and host→device cost of each representation.

What a training step has to move per sample, for the usual RGB inputs and for every DCT
preset (docs/benchmarks.md). Every figure is compared with the ``rgb224-uint8`` baseline
measured in the same run, and GPU figures only count when measured on a GPU.

Representations (:func:`representations`), one sample each:

* ``rgb224-uint8`` (3, 224, 224) uint8 — the baseline; ``rgb448-uint8`` (3, 448, 448) uint8
  (DCTNet's crop, before its DCT); ``rgb224-float32`` (3, 224, 224) float32 (what a loader
  that normalizes on the CPU ships);
* for each preset ``dctnet-6/24/32/48/64`` and ``all``, at 56 x 56 blocks (the ResNet-50
  geometry: 448 → 56):

  * ``<preset>-int16`` (C, 56, 56) int16: the store's own values;
  * ``<preset>-float16`` (C, 56, 56) float16;
  * ``<preset>-int8``: the compact transport, (C, 56, 56) int8: freqdata's
    :class:`freqdata.transport.Int8Transport` (per-channel scaled int8 of the normalized
    coefficients; its per-channel ``step``/``mean`` come from the store and cross the link
    once per run, so they add nothing per sample). When that module cannot be imported,
    an estimate stands in and the JSON says so (``"estimated": true``): int8 plus one
    float32 scale per channel per sample (``C * 4`` bytes), quantized as ``rint(x / s_c)``
    with ``s_c = max|x_c| / 127`` (:func:`quantize_int8`);
  * ``<preset>-native-{int16,float16,int8}``: native (4:2:0) chroma: the Y channels at
    56 x 56 and the Cb/Cr channels at 28 x 28 (two tensors per sample).

Figures per representation:

* ``bytes_per_sample`` (exact, from shapes and dtypes) and its ratio to the baseline;
* ``prep_samples_per_s`` (CPU, always, one core: numpy is single-threaded and torch is
  limited to one thread while it is timed): collating a batch of ``batch_size`` samples,
  each already in memory in the representation's source form (uint8 RGB / int16 cubes),
  into one contiguous batch buffer of the transport dtype (a copy, a cast, or the int8
  encode);
* CUDA only (``null`` and "N/A" without a GPU): host→device GB/s of that batch from pinned
  and from pageable memory, the pinned figure as % of the *pinned peak* (one pinned copy of
  ``peak_bytes``, 256 MiB by default, measured in the same run), and end-to-end samples/s
  to the device (prepare into a pinned buffer, copy with ``non_blocking``, turn into
  float32 on the device — RGB / 255, int8 decoded by the transport — synchronize).

Host memcpy GB/s (``np.copyto`` of ``peak_bytes``) is reported on every machine as the
CPU-side reference. Values are synthetic (seeded; DCT coefficients with JPEG-like ranges): copy and
cast times do not depend on them. Each timing is the median of ``repeats`` runs after one
warm-up run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from freqdata.bench.busy import OtherLoad, busy_line
from freqdata.bench.timing import median_seconds
from freqdata.errors import UsageError
from freqdata.presets import PRESETS, resolve_preset

__all__ = [
    "BASELINE",
    "BLOCKS",
    "DCT_PRESETS",
    "PEAK_BYTES",
    "Representation",
    "quantize_int8",
    "render_png",
    "render_table",
    "representations",
    "run_transfer_bench",
    "target_lines",
]

BASELINE = "rgb224-uint8"
#: Block grid of the DCT representations: ResNet-50's 448 crop → 56 x 56 blocks.
BLOCKS = 56
#: Presets shown, in table order.
DCT_PRESETS: tuple[str, ...] = ("dctnet-6", "dctnet-24", "dctnet-32", "dctnet-48",
                                "dctnet-64", "all")
#: Size of the copy that measures the pinned host→device peak (and the host memcpy).
PEAK_BYTES = 256 * 2**20
#: Target: the DCT-24 compact transport moves at most this fraction of the baseline's bytes.
BYTES_TARGET = 0.5
#: Target: a DCT-24 compact batch copies at >= this fraction of the pinned peak.
PEAK_TARGET = 0.9
TARGET_REPR = "dctnet-24-int8"
TARGET_REPR_NATIVE = "dctnet-24-native-int8"

SCALE_DTYPE = np.dtype(np.float32)


@dataclass(frozen=True)
class Representation:
    """One way to ship a sample: its tensors' shapes and dtype, plus per-sample overhead.

    ``parts``: shapes of the tensors of one sample (one for RGB and full chroma; luma and
    chroma for native chroma). ``dtype``: their element type. ``overhead_bytes``: side data
    per sample (the int8 transport's per-channel scales). ``source``: what a loader holds
    before preparing the batch: ``"rgb"`` (uint8, same shape) or ``"dct"`` (int16, same
    shapes). ``channels``: C (0 for RGB).
    """

    name: str
    family: str
    parts: tuple[tuple[int, ...], ...]
    dtype: np.dtype
    overhead_bytes: int
    source: str
    channels: int
    description: str
    estimated: bool = False

    @property
    def payload_bytes(self) -> int:
        """Bytes of the tensors of one sample."""
        return sum(int(np.prod(s)) for s in self.parts) * self.dtype.itemsize

    @property
    def bytes_per_sample(self) -> int:
        """Everything moved per sample: payload + overhead."""
        return self.payload_bytes + self.overhead_bytes


def _int8_codec() -> Any | None:
    """freqdata's compact transport class (``Int8Transport``) when importable, else ``None``."""
    try:
        from freqdata.transport import Int8Transport
    except Exception:  # not there (yet), or broken: the estimate stands in
        return None
    return Int8Transport


def _spread(c: int) -> np.ndarray:
    """Standard deviation per channel of the synthetic DCT values (DC-like channels wide)."""
    return np.where(np.arange(c) % 16 == 0, 300.0, 30.0).astype(np.float32)


def representations(blocks: int = BLOCKS) -> dict[str, Representation]:
    """Every representation of the benchmark, in table order (see the module docstring)."""
    side = blocks * 8
    half = blocks // 2
    codec = _int8_codec()
    reps: list[Representation] = [
        Representation("rgb224-uint8", "rgb", ((3, 224, 224),), np.dtype(np.uint8), 0, "rgb",
                       0, "RGB 224x224 uint8 (baseline)"),
        Representation("rgb448-uint8", "rgb", ((3, 448, 448),), np.dtype(np.uint8), 0, "rgb",
                       0, "RGB 448x448 uint8 (DCTNet's crop before its DCT)"),
        Representation("rgb224-float32", "rgb", ((3, 224, 224),), np.dtype(np.float32), 0,
                       "rgb", 0, "RGB 224x224 float32 (normalized on the CPU)"),
    ]
    for preset in DCT_PRESETS:
        p = resolve_preset(preset)
        c, cy, cc = p.channels, len(p.y), len(p.cb) + len(p.cr)
        layouts = (
            ("", ((c, blocks, blocks),), f"{side}px crop, full chroma"),
            ("-native", ((cy, blocks, blocks), (cc, half, half)),
             f"{side}px crop, native 4:2:0 chroma ({cc} ch at {half}x{half})"),
        )
        for suffix, parts, where in layouts:
            for kind, dtype in (("int16", np.int16), ("float16", np.float16),
                                ("int8", np.int8)):
                int8 = kind == "int8"
                desc = f"{preset} {kind} {where}"
                estimated = int8 and codec is None
                if int8 and codec is not None:
                    desc += " (freqdata.transport.Int8Transport; scales once per run)"
                elif int8:
                    desc += (f", + {c} float32 per-channel scales per sample (estimated: "
                             "freqdata.transport not found)")
                reps.append(Representation(
                    f"{preset}{suffix}-{kind}", kind, parts, np.dtype(dtype),
                    c * SCALE_DTYPE.itemsize if estimated else 0, "dct", c, desc,
                    estimated=estimated,
                ))
    return {r.name: r for r in reps}


# --------------------------------------------------------------------------- preparing


def quantize_int8(
    samples: Sequence[np.ndarray], out: np.ndarray, scales: np.ndarray
) -> None:
    """Per-channel symmetric int8 of ``samples`` (``B`` arrays ``(C, H, W)``) into ``out``.

    ``out``: ``(B, C, H, W)`` int8. ``scales``: ``(B, C)`` float32, receives
    ``s = max|x| / 127`` per sample and channel (1 for an all-zero channel); ``out =
    rint(x / s)``, so ``x ≈ out * s`` with error <= s / 2. One sample at a time (float32
    temporaries of one sample only).
    """
    for i, x in enumerate(samples):
        f = x.astype(np.float32)
        hi = np.maximum(f.max(axis=(1, 2)), -f.min(axis=(1, 2)))
        s = np.where(hi > 0, hi / np.float32(127), np.float32(1)).astype(np.float32)
        scales[i] = s
        f *= (np.float32(1) / s)[:, None, None]
        np.rint(f, out=f)
        out[i] = f


def _synthetic(rep: Representation, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Source data for ``batch`` samples: one array per part, ``(batch, *shape)``.

    RGB: uniform uint8. DCT: int16 with JPEG-like ranges (DC channels wide, AC narrow).
    """
    out = []
    for shape in rep.parts:
        if rep.source == "rgb":
            out.append(rng.integers(0, 256, size=(batch, *shape), dtype=np.uint8))
        else:
            x = rng.standard_normal((batch, *shape), dtype=np.float32)
            x *= _spread(shape[0])[:, None, None]
            out.append(np.clip(np.rint(x), -1024, 1016).astype(np.int16))
    return out


@dataclass
class _Batch:
    """Batch buffers of one representation: ``bufs`` (transport dtype, one per part),
    ``scales`` ``(B, C)`` float32 for the estimated int8, ``staging`` int16 buffers (float16
    cast, freqdata's int8), ``codecs`` one ``Int8Transport`` per part (freqdata's int8)."""

    bufs: list[np.ndarray]
    scales: np.ndarray | None
    staging: list[np.ndarray]
    codecs: list[Any]


def _batch_buffers(
    rep: Representation, batch: int, alloc: Callable[[tuple[int, ...], np.dtype], np.ndarray]
) -> _Batch:
    """Empty batch buffers of the transport dtype, allocated by ``alloc(shape, dtype)``."""
    bufs = [alloc((batch, *s), rep.dtype) for s in rep.parts]
    int8 = rep.family == "int8"
    scales = alloc((batch, rep.channels), SCALE_DTYPE) if int8 and rep.estimated else None
    codec = _int8_codec() if int8 and not rep.estimated else None
    codecs = [] if codec is None else [
        codec(np.zeros(s[0]), _spread(s[0]).astype(np.float64)) for s in rep.parts
    ]
    staging = ([np.empty((batch, *s), np.int16) for s in rep.parts]
               if rep.family == "float16" or codecs else [])
    return _Batch(bufs, scales, staging, codecs)


def _prepare(rep: Representation, samples: list[list[np.ndarray]], b: _Batch) -> None:
    """Collate per-sample arrays ``samples[part][i]`` into the batch buffers.

    Same dtype or uint8 → float32: one ``np.stack`` into the buffer. float16: ``np.stack``
    into an int16 staging buffer, then one bulk cast by torch (vectorized F16C; numpy's
    int16 → float16 cast is several times slower). int8: ``np.stack`` into int16 staging,
    then ``Int8Transport.encode`` (its clip k = its default, std = the synthetic spread), or
    the estimate's :func:`quantize_int8`.
    """
    if b.codecs:
        for part, buf, stage, codec in zip(samples, b.bufs, b.staging, b.codecs, strict=True):
            np.stack(part, out=stage)
            buf[...] = codec.encode(stage)
        return
    if rep.family == "int8":
        assert b.scales is not None
        offset = 0
        for part, buf in zip(samples, b.bufs, strict=True):
            c = buf.shape[1]
            quantize_int8(part, buf, b.scales[:, offset:offset + c])
            offset += c
        return
    if rep.family == "float16":
        import torch

        for part, buf, stage in zip(samples, b.bufs, b.staging, strict=True):
            np.stack(part, out=stage)
            torch.from_numpy(buf).copy_(torch.from_numpy(stage))
        return
    for part, buf in zip(samples, b.bufs, strict=True):
        np.stack(part, out=buf, casting="unsafe")


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads limited to ``n`` inside the block (no-op without torch)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _host_memcpy_gbps(repeats: int, nbytes: int) -> float:
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    t = median_seconds(lambda: np.copyto(dst, src), repeats)
    return nbytes / t / 1e9


# --------------------------------------------------------------------------- CUDA


def _cuda() -> Any | None:
    """The ``torch`` module when CUDA is usable, else ``None``."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _gpu_info(torch: Any) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    return {
        "name": torch.cuda.get_device_name(0),
        "capability": list(torch.cuda.get_device_capability(0)),
        "memory_gib": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "count": torch.cuda.device_count(),
        "torch_cuda": torch.version.cuda,
    }


def _cuda_time(torch: Any, fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``fn`` (host side + everything it queued on the GPU)."""

    def run() -> None:
        torch.cuda.synchronize()
        fn()
        torch.cuda.synchronize()

    return median_seconds(run, repeats)


def _pinned_peak_gbps(torch: Any, repeats: int, nbytes: int) -> float:
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    host.fill_(1)
    dev = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    t = _cuda_time(torch, lambda: dev.copy_(host, non_blocking=True), repeats)
    return nbytes / t / 1e9


def _cuda_figures(
    torch: Any,
    rep: Representation,
    samples: list[list[np.ndarray]],
    batch: int,
    repeats: int,
    peak: float,
) -> dict[str, Any]:
    """Host→device GB/s (pinned, pageable), % of peak, end-to-end samples/s for one rep."""

    def tensors(b: _Batch) -> list[Any]:  # torch views of the batch buffers (+ scales)
        out = [torch.from_numpy(x) for x in b.bufs]
        return out + ([torch.from_numpy(b.scales)] if b.scales is not None else [])

    def pinned_alloc(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        t = torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype,
                        pin_memory=True)
        return t.numpy()  # a numpy view of the pinned memory

    page_batch = _batch_buffers(rep, batch, lambda shape, dtype: np.empty(shape, dtype))
    _prepare(rep, samples, page_batch)
    page = tensors(page_batch)
    pin_batch = _batch_buffers(rep, batch, pinned_alloc)
    _prepare(rep, samples, pin_batch)
    pinned = tensors(pin_batch)  # from_numpy of pinned memory: still pinned
    dev = [torch.empty(t.shape, dtype=t.dtype, device="cuda") for t in pinned]
    nbytes = sum(t.numel() * t.element_size() for t in pinned)

    def copy(src: list[Any]) -> None:
        for d, x in zip(dev, src, strict=True):
            d.copy_(x, non_blocking=True)

    t_pin = _cuda_time(torch, lambda: copy(pinned), repeats)
    t_page = _cuda_time(torch, lambda: copy(page), repeats)

    def end_to_end() -> None:
        _prepare(rep, samples, pin_batch)
        copy(pinned)
        n = len(pin_batch.bufs)
        floats = [d.float() for d in dev[:n]]
        if rep.family == "rgb" and rep.dtype == np.uint8:
            floats = [f.mul_(1 / 255) for f in floats]
        if pin_batch.codecs:  # freqdata's int8: decode on the device (raw coefficients)
            floats = [c.decode(d) for c, d in zip(pin_batch.codecs, dev[:n], strict=True)]
        if pin_batch.scales is not None:  # dequantize: x = q * s, per sample and channel
            scales, off = dev[n], 0
            for f in floats:
                c = f.shape[1]
                f.mul_(scales[:, off:off + c, None, None])
                off += c

    t_e2e = _cuda_time(torch, end_to_end, repeats)
    pinned_gbps = nbytes / t_pin / 1e9
    return {
        "h2d_bytes_per_batch": nbytes,
        "h2d_pinned_gbps": _sig(pinned_gbps),
        "h2d_pageable_gbps": _sig(nbytes / t_page / 1e9),
        "pinned_pct_of_peak": _sig(100 * pinned_gbps / peak) if peak > 0 else None,
        "e2e_samples_per_s": _sig(batch / t_e2e),
    }


# --------------------------------------------------------------------------- run


def _sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (never to 0 for a positive ``x``)."""
    return float(f"{x:.{digits}g}") if x else 0.0


def _ratio(a: float | None, b: float | None, digits: int = 4) -> float | None:
    return _sig(a / b, digits) if a is not None and b else None


def run_transfer_bench(
    *,
    batch_size: int = 128,
    repeats: int = 5,
    device: str = "auto",
    peak_bytes: int = PEAK_BYTES,
    seed: int = 0,
    label: str | None = None,
    command: str | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the transfer benchmark; returns the JSON-ready result (module docstring).

    ``device``: ``"auto"`` (CUDA when available), ``"cpu"`` (skip GPU figures) or ``"cuda"``
    (:class:`UsageError` when CUDA is not available). ``batch_size`` samples per batch;
    ``repeats`` timed runs (median reported) after one warm-up.
    ``on_progress(stage, done, total)`` is called between measurements.
    """
    from freqdata.bench.decode import hardware_info, software_info

    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {repeats}")
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    if peak_bytes < 2**20:
        raise UsageError(f"peak copy must be >= 1 MiB, got {peak_bytes}")
    torch = _cuda() if device != "cpu" else None
    if device == "cuda" and torch is None:
        raise UsageError("--device cuda: no CUDA device (torch.cuda.is_available() is False)")
    cuda = torch is not None
    report = on_progress or (lambda stage, done, total: None)
    reps = representations()
    rng = np.random.default_rng(seed)
    started = _dt.datetime.now(_dt.UTC)
    t_start = time.perf_counter()
    meter = OtherLoad()

    memcpy = _host_memcpy_gbps(repeats, peak_bytes)
    peak = _pinned_peak_gbps(torch, repeats, peak_bytes) if cuda else None
    na_reason = None if cuda else (
        "no CUDA device: host→device and end-to-end figures are N/A (GPU figures only count "
        "when measured on a GPU)" if device != "cpu" else "--device cpu: GPU figures skipped"
    )

    rows: dict[str, dict[str, Any]] = {}
    for k, (name, rep) in enumerate(reps.items()):
        data = _synthetic(rep, batch_size, rng)
        samples = [list(arr) for arr in data]  # per-sample views, as a loader holds them
        buffers = _batch_buffers(rep, batch_size, lambda shape, dtype: np.empty(shape, dtype))
        with _torch_threads(1):
            t_prep = median_seconds(lambda rep=rep, samples=samples, buffers=buffers:
                                  _prepare(rep, samples, buffers), repeats)
        row: dict[str, Any] = {
            "description": rep.description,
            "family": rep.family,
            "shapes": [list(s) for s in rep.parts],
            "dtype": rep.dtype.name,
            "channels": rep.channels,
            "payload_bytes": rep.payload_bytes,
            "overhead_bytes": rep.overhead_bytes,
            "bytes_per_sample": rep.bytes_per_sample,
            "bytes_ratio_to_baseline": None,
            "estimated": rep.estimated,
            "prep_ms_per_batch": _sig(1000 * t_prep),
            "prep_samples_per_s": _sig(batch_size / t_prep) if t_prep > 0 else None,
            "prep_time_ratio_to_baseline": None,
            "h2d_bytes_per_batch": rep.bytes_per_sample * batch_size,
            "h2d_pinned_gbps": None,
            "h2d_pageable_gbps": None,
            "pinned_pct_of_peak": None,
            "e2e_samples_per_s": None,
            "e2e_ratio_to_baseline": None,
        }
        if cuda:
            assert peak is not None
            row.update(_cuda_figures(torch, rep, samples, batch_size, repeats, peak))
        rows[name] = row
        del data, samples, buffers
        report("measure", k + 1, len(reps))

    base = rows[BASELINE]
    for row in rows.values():
        row["bytes_ratio_to_baseline"] = round(row["bytes_per_sample"]
                                               / base["bytes_per_sample"], 6)
        row["prep_time_ratio_to_baseline"] = _ratio(row["prep_ms_per_batch"],
                                                    base["prep_ms_per_batch"])
        row["e2e_ratio_to_baseline"] = _ratio(row["e2e_samples_per_s"],
                                              base["e2e_samples_per_s"])

    targets = []
    for rname in (TARGET_REPR, TARGET_REPR_NATIVE):
        r = rows[rname]["bytes_ratio_to_baseline"]
        targets.append({
            "name": f"bytes-{rname}",
            "text": f"{rname} ≤ {BYTES_TARGET}x the bytes of {BASELINE}",
            "row": rname,
            "value": r,
            "limit": BYTES_TARGET,
            "pass": bool(r is not None and r <= BYTES_TARGET),
            "estimated": rows[rname]["estimated"],
        })
    pct = rows[TARGET_REPR]["pinned_pct_of_peak"]
    targets.append({
        "name": "h2d-vs-pinned-peak",
        "text": f"host→device of a {TARGET_REPR} batch (pinned) ≥ {100 * PEAK_TARGET:.0f}% "
                "of the measured pinned peak",
        "row": TARGET_REPR,
        "value": pct,
        "limit": 100 * PEAK_TARGET,
        "pass": None if pct is None else bool(pct >= 100 * PEAK_TARGET),
        "estimated": False,
        "na_reason": na_reason,
    })

    hardware = hardware_info()
    hardware["gpu"] = _gpu_info(torch) if cuda else None
    hardware["cores_used"] = 1
    hardware["other_processes_cpu_fraction"] = meter.fraction()
    software = software_info()
    try:
        import torch as _torch

        software["torch"] = _torch.__version__
        software["torch_cuda"] = _torch.version.cuda
    except ImportError:
        software["torch"] = None
    codec = _int8_codec()
    checked = [t["pass"] for t in targets if t["pass"] is not None]
    return {
        "benchmark": "transfer",
        "label": label,
        "command": command,
        "created": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t_start, 3),
        "hardware": hardware,
        "software": software,
        "settings": {
            "batch_size": batch_size,
            "repeats": repeats,
            "device": device,
            "blocks": [BLOCKS, BLOCKS],
            "peak_copy_bytes": peak_bytes,
            "seed": seed,
            "statistic": "median of repeats after one warm-up",
            "values": "synthetic (seeded): RGB uniform uint8, DCT int16 with JPEG-like ranges",
            "compact_transport": (
                f"{codec.__module__}.{codec.__name__} (per-channel scales once per run, not "
                "per sample)" if codec is not None else
                "not found (freqdata.transport): int8 rows are the estimate C*Hb*Wb int8 + "
                "C float32 scales per sample, quantized by "
                "freqdata.bench.transfer.quantize_int8"
            ),
            "compact_transport_estimated": codec is None,
        },
        "cuda": cuda,
        "gpu_figures": "measured" if cuda else "N/A",
        "na_reason": na_reason,
        "baseline": BASELINE,
        "host": {
            "memcpy_gbps": _sig(memcpy),
            "pinned_peak_gbps": _sig(peak) if peak is not None else None,
            "pinned_peak_vs_memcpy": _ratio(peak, memcpy),
        },
        "representations": rows,
        "targets": targets,
        "all_targets_pass": all(checked) if checked else None,
    }


# --------------------------------------------------------------------------- output


def _fmt(x: float | None, spec: str) -> str:
    return "N/A" if x is None else format(x, spec)


def render_table(result: dict[str, Any]) -> Any:
    """A ``rich.table.Table`` of a :func:`run_transfer_bench` result (one line per rep)."""
    from rich.table import Table

    hw, s = result["hardware"], result["settings"]
    gpu = hw.get("gpu")
    title = (f"freqdata bench transfer — batch {s['batch_size']}, median of {s['repeats']}, "
             f"DCT at {s['blocks'][0]}x{s['blocks'][1]} blocks")
    caption = f"{hw['cpu_model']} ({hw['logical_cpus']} logical CPUs)"
    caption += f"; GPU: {gpu['name']}" if gpu else "; no GPU: host→device figures N/A"
    if result.get("label"):
        caption += f" — {result['label']}"
    host = result["host"]
    caption += (f"\nhost memcpy {host['memcpy_gbps']:.1f} GB/s; pinned H2D peak "
                f"{_fmt(host['pinned_peak_gbps'], '.1f')} GB/s; x base, prep time x, e2e x = "
                f"/ {result['baseline']}; /s = samples/s (prep: 1 core, CPU)")
    if result["settings"].get("compact_transport_estimated"):
        caption += "; * = estimated compact transport"
    table = Table(title=title, caption=caption)
    for col in ("representation", "shape, dtype", "B/sample", "x base", "prep/s",
                "prep time x", "H2D pinned GB/s", "H2D pageable GB/s", "% peak", "e2e/s",
                "e2e x"):
        table.add_column(col, justify="left" if col in ("representation", "shape, dtype")
                         else "right", no_wrap=True)
    for name, r in result["representations"].items():
        shape = " + ".join("x".join(str(d) for d in sh) for sh in r["shapes"])
        table.add_row(
            name + (" *" if r["estimated"] else ""),
            f"{shape} {r['dtype']}",
            f"{r['bytes_per_sample']:,}",
            f"{r['bytes_ratio_to_baseline']:.3f}",
            _fmt(r["prep_samples_per_s"], ",.0f"),
            _fmt(r["prep_time_ratio_to_baseline"], ".2f"),
            _fmt(r["h2d_pinned_gbps"], ".2f"),
            _fmt(r["h2d_pageable_gbps"], ".2f"),
            _fmt(r["pinned_pct_of_peak"], ".1f"),
            _fmt(r["e2e_samples_per_s"], ",.0f"),
            _fmt(r["e2e_ratio_to_baseline"], ".2f"),
            style="bold" if name == result["baseline"] else None,
        )
    return table


def target_lines(result: dict[str, Any]) -> list[str]:
    """One ``PASS``/``FAIL``/``N/A`` line (rich markup) per target, then notes."""
    from rich.markup import escape

    lines = []
    for t in result["targets"]:
        if t["pass"] is None:
            lines.append(f"[bold yellow]N/A[/] {escape(t['text'])}: "
                         f"{escape(t.get('na_reason') or 'not measured')}")
            continue
        tag = "[bold green]PASS[/]" if t["pass"] else "[bold red]FAIL[/]"
        unit = "%" if t["name"].startswith("h2d") else "x"
        note = " (estimated compact transport)" if t.get("estimated") else ""
        lines.append(f"{tag} {escape(t['text'])}: {t['value']}{unit} (limit {t['limit']}{unit})"
                     f"{note}")
    if not result["cuda"]:
        lines.append(escape(f"N/A: {result['na_reason']}; bytes and CPU-side figures above "
                            "are measured"))
    busy = busy_line(result["hardware"].get("other_processes_cpu_fraction"))
    if busy is not None:
        lines.append(escape(busy))
    return lines


# --------------------------------------------------------------------------- PNG

_COLOURS = {
    "rgb": (120, 120, 120),
    "int16": (52, 101, 164),
    "float16": (230, 145, 56),
    "int8": (78, 154, 6),
}


def render_png(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Horizontal bar chart of bytes per sample per representation, written with Pillow.

    One bar per representation (colour = family: RGB grey, int16 blue, float16 orange,
    int8 green), the value in KiB and x baseline at its end, and vertical lines at the
    baseline's bytes and at the bytes target (0.5x). Returns the path written.
    """
    from PIL import Image, ImageDraw, ImageFont

    rows = result["representations"]
    base = rows[result["baseline"]]["bytes_per_sample"]
    try:
        font = ImageFont.load_default(size=15)
        small = ImageFont.load_default(size=13)
        big = ImageFont.load_default(size=19)
    except TypeError:  # Pillow < 10.1: bitmap font only
        font = small = big = ImageFont.load_default()
    bar_h, gap, left, right, top = 18, 6, 250, 200, 70
    width = 1200
    height = top + len(rows) * (bar_h + gap) + 60
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    plot_w = width - left - right
    vmax = max(r["bytes_per_sample"] for r in rows.values())
    scale = plot_w / vmax

    def x_of(v: float) -> int:
        return left + round(v * scale)

    hw = result["hardware"]
    d.text((10, 8), "Bytes per sample (DCT at 56x56 blocks)", fill="black", font=big)
    sub = (f"{'GPU: ' + hw['gpu']['name'] if hw.get('gpu') else 'no GPU'}; "
           f"baseline {result['baseline']} = {base:,} B")
    if result["settings"].get("compact_transport_estimated"):
        sub += "; * = estimated compact transport (freqdata.transport not found)"
    d.text((10, 34), sub, fill=(80, 80, 80), font=small)
    bottom = top + len(rows) * (bar_h + gap)
    for v, text, colour in ((base, "RGB-224 uint8", (150, 0, 0)),
                            (BYTES_TARGET * base, "0.5x", (200, 80, 80))):
        x = x_of(v)
        for y in range(top - 6, bottom, 8):  # dashed line
            d.line([(x, y), (x, min(y + 4, bottom))], fill=colour, width=1)
        d.text((x + 3, bottom + 4), text, fill=colour, font=small)
    for i, (name, r) in enumerate(rows.items()):
        y = top + i * (bar_h + gap)
        colour = _COLOURS.get(r["family"], (100, 100, 100))
        label = name + (" *" if r["estimated"] else "")
        tw = d.textlength(label, font=font)
        d.text((left - 8 - tw, y), label, fill="black", font=font)
        d.rectangle([left, y, max(left + 1, x_of(r["bytes_per_sample"])), y + bar_h],
                    fill=colour)
        value = f"{r['bytes_per_sample'] / 1024:,.1f} KiB  ({r['bytes_ratio_to_baseline']:.3f}x)"
        pos = (x_of(r["bytes_per_sample"]) + 6, y + 1)
        d.rectangle(d.textbbox(pos, value, font=small), fill="white")  # over the guide lines
        d.text(pos, value, fill="black", font=small)
    legend_x = left
    for fam, colour in _COLOURS.items():
        d.rectangle([legend_x, height - 24, legend_x + 14, height - 10], fill=colour)
        d.text((legend_x + 20, height - 26), fam, fill="black", font=small)
        legend_x += 110
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG")
    return out


# keep every preset shown known to the presets table (a renamed preset fails loudly here)
assert all(p in PRESETS for p in DCT_PRESETS)
