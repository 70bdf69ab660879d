"""``freqdata bench loader``: store → ready batches, per order and worker count, vs baselines.

:func:`run_loader_bench` measures, in one run, on one store:

* ``per-sample`` (the baseline): the naive loop ``ImageStore[i]`` in a random order,
  ``np.stack`` of ``batch_size`` cubes, ``torch.from_numpy`` — one zarr call per sample;
* ``zarr-runs``: the loader's bulk path forced through zarr (one ``arr[a:b]`` per run of
  consecutive rows), in-process — what the loader does for stores it cannot read directly;
* ``<order>/w<n>`` for each order (``random``, ``quasi``) and worker count ``n``: the real
  :func:`freqdata.loader.make_loader` machinery (``StoreSampler`` → ``StoreDataset.read_batch``
  in ``n`` DataLoader worker processes, 0 = in the main process) until ready CPU batches;
* ``<order>/t<n>``: thread mode (``make_loader(threads=n)``): ``n`` threads of the main
  process read batches ahead (GIL-free Blosc decoding, no shared-memory hand-over);
* ``random+int8/w<n>``, ``random+int8/t<n>``: the int8 transport (sqrt companding) encoded
  on the CPU side, for the largest worker and thread counts;
* with CUDA: ``<order>/w<n>>cuda`` and ``<order>/t<n>>cuda``: pinned memory (thread mode
  decodes straight into it), :func:`freqdata.loader.to_device` (``non_blocking``) and a
  synchronize per batch.

Method: the loader is :func:`~freqdata.loader.make_loader` itself, with ``endless=True``
(epochs 0, 1, 2, ... back to back) so a small store does not restart the worker pipeline
every few batches; each timed run builds a fresh loader, takes
``2 * max(n, 1)`` warm-up batches, then counts samples for ``seconds``. Rows are
interleaved within a pass and the figure is the median over ``repeats`` passes.
``samples_per_s`` is wall-clock; ``samples_per_cpu_s`` divides by the CPU time of the main
process and its workers (``/proc/<pid>/stat``), i.e. samples/s *per core actually used*,
which stays meaningful when other jobs share the machine; ``other_cpu`` is the fraction of
the machine's CPU that other processes used during the row (``/proc/stat``), and the load
average is recorded before every pass. Ratios are to the ``per-sample`` baseline.

Also here (for the docs' error figures): :func:`measure_transport` (int8 transport error
and bytes on a real store, calibrated on one half of the rows and measured on the other)
and :func:`measure_chroma_upsampling` (native → full chroma in the DCT domain vs the
store's full-chroma encoding of the same files).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from freqdata.bench.busy import machine_busy_s
from freqdata.errors import UsageError
from freqdata.loader import ORDERS, StoreDataset, StoreSampler, make_loader, to_device
from freqdata.shards import ShardReader, _blosc_decompress, _pread
from freqdata.store import ImageStore

__all__ = [
    "BASELINE",
    "measure_bounds",
    "measure_chroma_upsampling",
    "measure_transport",
    "render_table",
    "run_loader_bench",
    "target_lines",
]

BASELINE = "per-sample"
#: samples per CPU-second, fixed dctnet-24 56x56 int16 store (issue 15; stretch 10,000)
TARGET_PER_CORE = 6000.0


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Meter:
    """Wall time, our CPU time (main + given pids) and others' CPU time over a window."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = [os.getpid(), *pids]
        self.t0 = time.perf_counter()
        self.c0 = sum(_proc_cpu_s(p) for p in self.pids)
        self.m0 = machine_busy_s() or 0.0

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        cpu = sum(_proc_cpu_s(p) for p in self.pids) - self.c0
        machine = (machine_busy_s() or 0.0) - self.m0
        ncpu = os.cpu_count() or 1
        return {"wall_s": wall, "cpu_s": cpu, "other_cpu": max(machine - cpu, 0.0) / (wall * ncpu)}


def _per_sample_run(path: str, batch_size: int, seconds: float, seed: int) -> dict[str, Any]:
    store = ImageStore(path)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(store))
    for i in perm[:8]:
        store[int(i)]  # warm up
    meter = _Meter([])
    n, k = 0, 0
    while time.perf_counter() - meter.t0 < seconds:
        rows = [perm[(k + j) % len(perm)] for j in range(batch_size)]
        k += batch_size
        cubes = [store[int(i)] for i in rows]
        batch = {
            "cubes": torch.from_numpy(np.stack([c for c, _ in cubes])),
            "labels": torch.tensor([lab for _, lab in cubes]),
        }
        n += len(batch["labels"])
    return {"samples": n, **meter.stop()}


def _zarr_runs_run(path: str, batch_size: int, seconds: float, seed: int) -> dict[str, Any]:
    ds = StoreDataset(path)
    ds._readers = {ds.parts[0].name: ds.store.group[ds.parts[0].name]}  # force the zarr path
    sampler = StoreSampler(len(ds), batch_size=batch_size, seed=seed, drop_last=True,
                           rank=0, world_size=1, endless=True)  # fmt: skip
    it = iter(sampler)
    ds.read_batch(next(it).indices)
    meter = _Meter([])
    n = 0
    while time.perf_counter() - meter.t0 < seconds:
        n += len(ds.read_batch(next(it).indices)["labels"])
    return {"samples": n, **meter.stop()}


def _loader_run(
    path: str,
    *,
    batch_size: int,
    order: str,
    workers: int,
    seconds: float,
    seed: int,
    threads: int = 0,
    transport: Any = None,
    device: str | None = None,
) -> dict[str, Any]:
    loader = make_loader(
        path,
        batch_size=batch_size,
        seed=seed,
        order=order,  # type: ignore[arg-type]
        drop_last=True,
        rank=0,
        world_size=1,
        num_workers=workers,
        threads=threads,
        pin_memory=device is not None,
        persistent_workers=False,
        prefetch_factor=2,
        transport=transport,
        endless=True,
    )
    it = iter(loader)

    def step() -> int:
        batch = next(it)
        if device is not None:
            batch = to_device(batch, device)
            torch.cuda.synchronize()
        return len(batch["labels"])

    for _ in range(2 * max(workers, threads, 1)):
        step()
    meter = _Meter([w.pid for w in getattr(it, "_workers", [])])
    n = 0
    while time.perf_counter() - meter.t0 < seconds:
        n += step()
    out = {"samples": n, **meter.stop()}
    shutdown = getattr(it, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    return out


def _stored_chunks(reader: ShardReader, rows: int) -> list[np.ndarray]:
    """The stored (Blosc) chunks of rows ``0..rows-1``, crc32c trailers removed, in memory."""
    chunks: list[np.ndarray] = []
    for s in range(-(-rows // reader.shard_rows)):
        want = np.arange(s * reader.shard_rows, min(rows, (s + 1) * reader.shard_rows))
        fd = os.open(reader._path(s), os.O_RDONLY)
        try:
            idx = reader._shard_index(s, fd, want, len(want))
            for o, n in idx[want - s * reader.shard_rows]:
                c = _pread(fd, int(n), int(o))
                chunks.append(c[:-4] if reader.checksums else c)
        finally:
            os.close(fd)
    return chunks


def measure_bounds(
    store_path: str | Path, *, batch_size: int = 256, seconds: float = 2.0, repeats: int = 3
) -> dict[str, Any] | None:
    """What bounds the loader on a fixed store read directly (None for other stores).

    Three loops, one thread, in this process, each filling a preallocated ``(batch_size,
    *sample)`` batch from the store's first ``batch_size`` rows over and over (median of
    ``repeats`` runs of ``seconds``), in samples/s:

    * ``store-read``: :meth:`freqdata.shards.ShardReader.read` of the rows (page-cached
      ``preadv``, crc32c checks, Blosc decompression): the store's read speed alone;
    * ``decompress``: Blosc decompression alone, of the same chunks already in memory;
    * ``memcpy``: a copy of the same decompressed bytes (``np.copyto`` per sample).
    """
    store = ImageStore(store_path)
    part = store.parts[0]
    reader = ShardReader.open(Path(store_path) / part.name) if part.grid else None
    if store.layout != "fixed" or reader is None or not reader.blosc:
        return None
    n = min(batch_size, len(store))
    rows = np.arange(n)
    batch = np.empty((n, *reader.sample_shape), reader.dtype)
    targets = list(batch)
    chunks = _stored_chunks(reader, n)
    decoded = batch.copy()
    reader.read(rows, list(decoded), len(store))

    def store_read() -> None:
        reader.read(rows, targets, len(store))

    def decompress() -> None:
        for c, t in zip(chunks, targets, strict=True):
            _blosc_decompress(c, t)

    def memcpy() -> None:
        for src, t in zip(decoded, targets, strict=True):
            np.copyto(t, src)

    out: dict[str, Any] = {
        "samples": n,
        "sample_bytes": int(reader.sample_bytes),
        "stored_bytes_per_sample": round(sum(len(c) for c in chunks) / n, 1),
    }
    for name, fn in (("store-read", store_read), ("decompress", decompress), ("memcpy", memcpy)):
        rates = []
        for _ in range(repeats):
            fn()
            meter = _Meter([])
            k = 0
            while time.perf_counter() - meter.t0 < seconds:
                fn()
                k += n
            m = meter.stop()
            rates.append((k / m["wall_s"], k / m["cpu_s"] if m["cpu_s"] > 0 else float("nan")))
        np.testing.assert_array_equal(batch, decoded)  # the loop wrote the store's rows
        out[name] = {
            "samples_per_s": round(statistics.median(r for r, _ in rates), 1),
            "samples_per_cpu_s": round(statistics.median(c for _, c in rates), 1),
        }
    return out


def _hardware() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
            )
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gpu": gpu,
    }


def run_loader_bench(
    store_path: str | Path,
    *,
    batch_size: int = 256,
    workers: int | Sequence[int] = (0, 1, 2),
    threads: Sequence[int] = (2,),
    orders: Sequence[str] = ORDERS,
    seconds: float = 5.0,
    repeats: int = 3,
    seed: int = 0,
    baseline: bool = True,
    transport: bool = True,
    device: str | None = None,
    bounds: bool = True,
    label: str | None = None,
    command: str | None = None,
    json_path: str | Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the loader on ``store_path`` (module docstring); returns the result dict.

    ``workers``: worker counts for the ``w<n>`` rows (one int: just that count).
    ``device``: None or ``"auto"`` → ``"cuda"`` rows when CUDA is available; ``"none"`` or
    ``"cpu"``: no host-to-device rows.
    ``bounds``: also :func:`measure_bounds` (store read, decompression and memcpy speed
    alone, for fixed stores read directly). ``echo`` receives the rendered table (None:
    silent). ``json_path`` also writes the dict. Result: ``{"rows": {name: {samples_per_s,
    samples_per_cpu_s, ratio_to_baseline, cpu_over_wall, other_cpu, runs: [...]}},
    "bounds", "settings", "hardware", "store", "load", "label", "command"}``.

    Raises :class:`freqdata.errors.UsageError` for bad options.
    """
    if isinstance(workers, int):
        workers = (workers,)
    if batch_size < 1 or repeats < 1 or seconds <= 0 or any(w < 0 for w in workers):
        raise UsageError("batch_size and repeats must be >= 1, seconds > 0, workers >= 0")
    path = str(store_path)
    store = ImageStore(path)
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "none"
    elif device == "cpu":
        device = "none"  # the CPU rows are the CPU figures: no host-to-device rows
    rows: dict[str, Callable[[], dict[str, Any]]] = {}
    if baseline:
        rows[BASELINE] = lambda: _per_sample_run(path, batch_size, seconds, seed)
        if store.layout == "fixed":
            rows["zarr-runs"] = lambda: _zarr_runs_run(path, batch_size, seconds, seed)
    for order in orders:
        for w in workers:
            rows[f"{order}/w{w}"] = lambda order=order, w=w: _loader_run(
                path, batch_size=batch_size, order=order, workers=w, seconds=seconds, seed=seed
            )
        for n in threads:
            rows[f"{order}/t{n}"] = lambda order=order, n=n: _loader_run(
                path,
                batch_size=batch_size,
                order=order,
                workers=0,
                threads=n,
                seconds=seconds,
                seed=seed,
            )
    modes = [(f"w{max(workers)}", max(workers), 0)] if workers else []
    modes += [(f"t{max(threads)}", 0, max(threads))] if threads else []
    if transport and store.layout == "fixed":
        from freqdata.transport import Int8Transport

        t8 = Int8Transport.from_store(store)
        for tag, w, n in modes:
            rows[f"random+int8/{tag}"] = lambda w=w, n=n: _loader_run(
                path,
                batch_size=batch_size,
                order="random",
                workers=w,
                threads=n,
                seconds=seconds,
                seed=seed,
                transport=t8,
            )
    if device != "none":
        for order in orders:
            for tag, w, n in modes:
                rows[f"{order}/{tag}>{device}"] = lambda order=order, w=w, n=n: _loader_run(
                    path,
                    batch_size=batch_size,
                    order=order,
                    workers=w,
                    threads=n,
                    seconds=seconds,
                    seed=seed,
                    device=device,
                )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in rows}
    load = []
    for _ in range(repeats):
        for name, fn in rows.items():
            load.append(round(os.getloadavg()[0], 2))
            r = fn()
            r["loadavg_before"] = load[-1]
            runs[name].append(r)
    results: dict[str, Any] = {}
    for name, rs in runs.items():
        sps = statistics.median(r["samples"] / r["wall_s"] for r in rs)
        spc = statistics.median(r["samples"] / r["cpu_s"] for r in rs if r["cpu_s"] > 0)
        results[name] = {
            "samples_per_s": round(sps, 1),
            "samples_per_cpu_s": round(spc, 1),
            "cpu_over_wall": round(statistics.median(r["cpu_s"] / r["wall_s"] for r in rs), 2),
            "other_cpu": round(statistics.median(r["other_cpu"] for r in rs), 2),
            "runs": rs,
        }
    base = results.get(BASELINE)
    for r in results.values():
        r["ratio_to_baseline"] = (
            round(r["samples_per_s"] / base["samples_per_s"], 2) if base else None
        )
        r["ratio_per_cpu_to_baseline"] = (
            round(r["samples_per_cpu_s"] / base["samples_per_cpu_s"], 2) if base else None
        )
    part = store.parts[0]
    fast = ShardReader.open(Path(path) / part.name) is not None if part.grid else False
    result = {
        "benchmark": "loader",
        "label": label,
        "command": command,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "store": {
            "path": path,
            "samples": len(store),
            "layout": store.layout,
            "parts": [vars(p) for p in store.parts],
            "shard_reader": fast,
            "preset": store.config.get("preset"),
        },
        "settings": {
            "batch_size": batch_size,
            "workers": list(workers),
            "orders": list(orders),
            "seconds": seconds,
            "repeats": repeats,
            "seed": seed,
            "device": device,
        },
        "hardware": _hardware(),
        "load": load,
        "target_samples_per_cpu_s": TARGET_PER_CORE,
        "rows": results,
        "bounds": (
            measure_bounds(path, batch_size=batch_size, seconds=seconds, repeats=repeats)
            if bounds
            else None
        ),
    }
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=1, default=str) + "\n")
    if echo is not None:
        echo(render_table(result))
    return result


def render_table(result: dict[str, Any]) -> str:
    """A plain-text table of a :func:`run_loader_bench` result."""
    s = result["store"]
    hw = result["hardware"]
    st = result["settings"]
    head = (
        f"freqdata bench loader — {s['path']} ({s['samples']} samples, {s['layout']}, "
        f"{s['preset']}), batch {st['batch_size']}, median of {st['repeats']} x "
        f"{st['seconds']:g} s\n{hw['cpu_model']}, {hw['logical_cpus']} logical CPUs, "
        f"torch {hw['torch']}, GPU {hw['gpu'] or 'none'}; load avg before passes "
        f"{min(result['load']):.2f}-{max(result['load']):.2f}\n"
    )
    cols = ("row", "samples/s", "x base", "samples/cpu-s", "x base", "cpu/wall", "other cpu")
    lines = [
        f"{cols[0]:<22}{cols[1]:>11}{cols[2]:>8}{cols[3]:>15}{cols[4]:>8}{cols[5]:>10}{cols[6]:>11}"
    ]
    for name, r in result["rows"].items():
        ratio = r["ratio_to_baseline"]
        ratio_c = r["ratio_per_cpu_to_baseline"]
        lines.append(
            f"{name:<22}{r['samples_per_s']:>11.0f}"
            f"{(f'{ratio:.2f}' if ratio else '-'):>8}{r['samples_per_cpu_s']:>15.0f}"
            f"{(f'{ratio_c:.2f}' if ratio_c else '-'):>8}{r['cpu_over_wall']:>10.2f}"
            f"{r['other_cpu']:>11.2f}"
        )
    b = result.get("bounds")
    if b:
        lines.append(
            f"bounds, one thread on {b['samples']} rows ({b['sample_bytes']} bytes/sample, "
            f"{b['stored_bytes_per_sample']:.0f} stored):"
        )
        for name in ("store-read", "decompress", "memcpy"):
            r = b[name]
            lines.append(
                f"  {name:<20}{r['samples_per_s']:>11.0f}{'':>8}{r['samples_per_cpu_s']:>15.0f}"
            )
    foot = (
        "samples/cpu-s = samples per CPU-second of the main process and its workers "
        "(per core used); other cpu = share of the machine used by other processes; "
        "bounds: the store's own read (ShardReader), its Blosc decompression alone and a "
        "memcpy of the same bytes"
    )
    return head + "\n".join(lines) + "\n" + foot


def target_lines(result: dict[str, Any]) -> list[str]:
    """``PASS``/``FAIL`` for the best loader row's samples per CPU-second against
    :data:`TARGET_PER_CORE` (rich markup)."""
    rows = {k: r for k, r in result["rows"].items() if k not in (BASELINE, "zarr-runs")}
    if not rows:
        return []
    name, best = max(rows.items(), key=lambda kv: kv[1]["samples_per_cpu_s"])
    ok = best["samples_per_cpu_s"] >= result["target_samples_per_cpu_s"]
    tag = "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"
    return [
        f"{tag} loader ≥ {result['target_samples_per_cpu_s']:,.0f} samples per CPU-second: "
        f"best row {name} at {best['samples_per_cpu_s']:,.0f}"
    ]


def measure_transport(
    store_path: str | Path, *, seed: int = 0, ks: Sequence[float] = (4.0, 8.0, 16.0)
) -> dict[str, Any]:
    """int8 transport error and bytes on a real fixed store, in coefficient units.

    Rows are split at random (seeded) into halves: the linear companding's per-channel ``k``
    is calibrated on the first, every variant is measured on the second: ``sqrt`` (the
    default, no calibration), ``linear-calibrated`` and ``linear-k<k>`` for ``ks``.
    Returns ``{"bytes_per_sample": {int16, int8, float32}, "variants": {name: errors},
    "encode_samples_per_s": {name: ...}}`` (errors from
    :func:`freqdata.transport.transport_error`).
    """
    from freqdata.transport import Int8Transport, transport_bytes, transport_error

    store = ImageStore(store_path)
    ds = StoreDataset(store)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ds))
    half = len(ds) // 2
    cal = ds.read_batch(np.sort(perm[:half]))["cubes"].numpy()
    test = ds.read_batch(np.sort(perm[half:]))["cubes"].numpy()
    variants = {
        "sqrt": Int8Transport.from_store(store),
        "linear-calibrated": Int8Transport.calibrate(store, cal),
        **{f"linear-k{k:g}": Int8Transport.from_store(store, k, "linear") for k in ks},
    }
    errors, speed = {}, {}
    batch = test[:128]
    out = np.empty(batch.shape, np.int8)
    for name, t in variants.items():
        e = transport_error(t, test)
        errors[name] = {
            key: (round(v, 4) if isinstance(v, float) else [round(x, 3) for x in v])
            for key, v in e.items()
        }
        errors[name]["k"] = [round(float(x), 3) for x in t.k]
        t.encode(batch[:4])
        t0 = time.perf_counter()
        for _ in range(3):
            t.encode(batch, out=out)
        speed[name] = round(3 * len(batch) / (time.perf_counter() - t0), 1)
    return {
        "store": str(store_path),
        "calibration_rows": half,
        "test_rows": len(ds) - half,
        "bytes_per_sample": {r: transport_bytes(r, store) for r in ("int16", "int8", "float32")},
        "variants": errors,
        "encode_samples_per_s": speed,
    }


def measure_chroma_upsampling(
    files: Sequence[str | Path], preset: str = "dctnet-24"
) -> dict[str, Any]:
    """Native chroma upsampled in the DCT domain vs ``encode_image(..., chroma="full")``.

    For each file (coefficient path): ``upsample_chroma`` of the native chroma (only the
    preset's stored chroma coefficients) against the full-chroma encoding of the same file.
    Per chroma channel: RMS and max abs error in coefficient units and RMS relative to the
    channel's std in the full encoding; files without subsampled chroma are skipped.
    """
    from freqdata.encode import encode_image
    from freqdata.presets import resolve_preset
    from freqdata.transforms import upsample_chroma

    p = resolve_preset(preset)
    ny = len(p.y)
    errs, refs, used = [], [], []
    for f in files:
        luma, chroma = encode_image(f, p, chroma="native")
        if luma.shape[1:] == chroma.shape[1:]:
            continue
        full = encode_image(f, p, chroma="full")
        fac = tuple(
            next(k for k in (1, 2, 4) if -(-a // k) == b)
            for a, b in zip(luma.shape[1:], chroma.shape[1:], strict=True)
        )
        up = upsample_chroma(torch.from_numpy(chroma)[None].double(), fac, p.cb, luma.shape[1:])[
            0
        ].numpy()
        c = chroma.shape[0]
        errs.append((up - full[ny:]).reshape(c, -1))
        refs.append(full[ny:].reshape(c, -1).astype(np.float64))
        used.append(str(f))
    if not errs:
        return {"files": [], "channels": {}}
    e, r = np.concatenate(errs, 1), np.concatenate(refs, 1)
    names = [f"Cb{k}" for k in p.cb] + [f"Cr{k}" for k in p.cr]
    rms = np.sqrt((e**2).mean(1))
    return {
        "preset": preset,
        "files": used,
        "blocks": int(e.shape[1]),
        "rms": round(float(np.sqrt((e**2).mean())), 3),
        "max_abs": round(float(np.abs(e).max()), 3),
        "channels": {
            n: {
                "rms": round(float(rms[i]), 3),
                "max_abs": round(float(np.abs(e[i]).max()), 3),
                "rms_over_std": round(float(rms[i] / max(r[i].std(), 1e-12)), 4),
            }
            for i, n in enumerate(names)
        },
    }
