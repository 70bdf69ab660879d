"""``freqdata bench decode``: per-image cost of freqdata's encoders against RGB decoding.

Every figure is measured in the same run as its baselines and reported as a ratio
(docs/benchmarks.md):

* ``simplejpeg-rgb`` — a plain libjpeg-turbo RGB decode (the baseline);
* ``dctnet-style`` — what DCTNet's data pipeline does per image (the anchor).

Method (:func:`run_decode_bench`):

1. JPEGs (``*.jpg``/``*.jpeg``, any case, recursively) are taken in sorted relative-path
   order and read into memory first, so the disk is out of the measurement.
2. A validation pass runs every row once on every file, in order, until ``limit`` files
   passed: a file any row fails on is skipped (listed with the row and the reason). This
   pass also warms caches and lazy imports; it is not timed.
3. ``repeats`` timed passes; each pass runs every row over all files in turn (rows
   interleaved within a pass, so slow drift of the machine affects all rows alike), one
   chroma-sampling group after the other (:func:`chroma_sampling`: 4:4:4, 4:2:2, 4:2:0,
   ..., gray), with the garbage collector off during a group's loop (as :mod:`timeit`
   does). A row's figure is the median over passes of its pass total, divided by the number
   of files; each group's figures (``by_sampling``) are the same over its files alone.

Everything runs serially in the calling process, on one core: Pillow, simplejpeg and
freqdata's C reader are single-threaded, and numpy's BLAS (OpenBLAS, which would split the
block-DCT and chroma-upsampling GEMMs over several threads) is limited to one thread for the
timed passes, through ``threadpoolctl`` when installed, else through OpenBLAS's own
``*_set_num_threads`` found in the process's loaded libraries. Each row's process-CPU /
wall time ratio is recorded as a check (about 1.0 when single-threaded).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import gc
import io
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from freqdata.bench.busy import OtherLoad, busy_line
from freqdata.errors import UsageError

__all__ = [
    "ANCHOR",
    "BASELINE",
    "ROW_NAMES",
    "SAMPLINGS",
    "TARGETS",
    "NoImagesError",
    "Target",
    "chroma_sampling",
    "find_jpegs",
    "make_rows",
    "render_table",
    "run_decode_bench",
    "single_threaded_blas",
    "target_lines",
]

BASELINE = "simplejpeg-rgb"
ANCHOR = "dctnet-style"
JPEG_SUFFIXES = (".jpg", ".jpeg")

#: DCTNet's ResNet-50 evaluation geometry: shorter side 512, centre crop 448, upscale x2.
DCTNET_RESIZE, DCTNET_CROP, DCTNET_UPSCALE = 512, 448, 2
#: The usual RGB network input (torchvision-style 224 x 224).
RGB_SIZE = 224
#: Below this process-CPU / wall ratio a row was preempted: the machine was busy.
BUSY_CPU_OVER_WALL = 0.9


class NoImagesError(UsageError):
    """The folder holds no JPEG that every row can process (bad usage: exit status 2)."""


@dataclass(frozen=True)
class Target:
    """``time(row) / time(versus) <= limit``, i.e. ``row`` is at least ``1/limit`` x faster;
    over the files of one chroma ``sampling`` (see :func:`chroma_sampling`) or all files."""

    name: str
    row: str
    versus: str
    limit: float
    text: str
    sampling: str | None = None


TARGETS: tuple[Target, ...] = (
    Target("coeff-vs-rgb-decode-444", "coeff", BASELINE, 0.85,
           "coeff ≤ 0.85x simplejpeg-rgb on 4:4:4 files", "4:4:4"),
    Target("coeff-vs-rgb-decode-422", "coeff", BASELINE, 1.0,
           "coeff ≤ 1.0x simplejpeg-rgb on 4:2:2 files", "4:2:2"),
    Target("coeff-vs-rgb-decode-420", "coeff", BASELINE, 1.0,
           "coeff ≤ 1.0x simplejpeg-rgb on 4:2:0 files", "4:2:0"),
    Target("pixels-vs-dctnet", "pixels-resnet", ANCHOR, 0.5,
           "pixels-resnet ≥ 2x faster than dctnet-style"),
    Target("pixels-vs-rgb224", "pixels-resnet", "simplejpeg-rgb+resize224", 2.0,
           "pixels-resnet ≤ 2x simplejpeg-rgb+resize224"),
)

Row = Callable[[bytes], object]

ROW_DESCRIPTIONS: dict[str, str] = {
    "coeff": "encode_image(b, preset, 'coeff', 'none'): JPEG coefficients, whole image",
    "pixels-resnet": "encode_image(b, preset, 'pixels', 'resnet'): decode → 512 → 448 → DCT",
    "simplejpeg-rgb": "simplejpeg.decode_jpeg(b): full-size RGB decode (baseline)",
    "simplejpeg-rgb+resize224": "simplejpeg RGB decode + PIL bilinear resize to 224x224",
    "pil-rgb+resize224": "PIL open/convert('RGB') + bilinear resize to 224x224",
    "dctnet-style": (
        "DCTNet eval pipeline (anchor): PIL RGB decode, shorter side 512, centre crop 448, "
        "x2 bilinear to 896, JPEG q100 4:2:0 of the 448 (Y) and 896 (Cb, Cr) images, "
        "read coefficients, keep the preset's channels"
    ),
}
ROW_NAMES: tuple[str, ...] = tuple(ROW_DESCRIPTIONS)

#: Chroma samplings reported separately, in table order (others are named ``h1xv1,...``).
SAMPLINGS: tuple[str, ...] = ("4:4:4", "4:2:2", "4:2:0", "4:4:0", "4:1:1", "gray")
_SAMPLING_NAMES = {
    (1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0", (4, 1): "4:1:1",
}  # fmt: skip


def chroma_sampling(b: bytes) -> str:
    """The chroma sampling of a JPEG from its header: ``"gray"`` for one component,
    ``"4:4:4"``, ``"4:2:2"``, ``"4:2:0"``, ``"4:4:0"``, ``"4:1:1"`` where both chroma
    components are subsampled alike by luma/chroma factor ratios (1,1), (2,1), (2,2), (1,2),
    (4,1) (horizontal, vertical), else the factors as ``"2x2,1x1,1x1"``."""
    from freqdata.jpeg import read_header

    header = read_header(b)
    sampling = header.sampling if header is not None else ()
    if len(sampling) == 1:
        return "gray"
    if len(sampling) == 3 and sampling[1] == sampling[2]:
        (hy, vy), (hc, vc) = sampling[0], sampling[1]
        if hy % hc == 0 and vy % vc == 0 and (hy // hc, vy // vc) in _SAMPLING_NAMES:
            return _SAMPLING_NAMES[(hy // hc, vy // vc)]
    return ",".join(f"{h}x{v}" for h, v in sampling) or "unknown"


# --------------------------------------------------------------------------- rows


def _dctnet_style(b: bytes, y_sel: np.ndarray, c_sel: np.ndarray) -> np.ndarray:
    """DCTNet's per-image evaluation pipeline (``valloader_upscaled_static``, ResNet-50).

    DCTNet (kaix90/DCTNet, classification/datasets): ``Resize(512)`` → ``CenterCrop(448)``
    → ``Upscale(2)`` → ``TransformUpscaledDCT``. ``Upscale`` returns the 448 crop *and* its
    x2 bilinear upscale (896); ``TransformUpscaledDCT`` JPEG-encodes both with PyTurboJPEG
    (``encode(img, quality=100, jpeg_subsample=2)``, i.e. TJSAMP_420 = 4:2:0, default
    accurate integer DCT) and reads them back with jpeg2dct: Y from the 448 image, Cb/Cr
    from the 896 one (whose 4:2:0 chroma planes are 448 x 448, so all three are 56 x 56
    blocks). We do the same, with these substitutions:

    * decode and resampling: Pillow (DCTNet used OpenCV ``imread`` and ``cv2.resize``
      ``INTER_LINEAR``, not installed here). Pillow's bilinear filter is antialiased when it
      shrinks (wider support), so the 512 resize can cost a little more than OpenCV's;
      the output sizes follow DCTNet (``int()`` truncation, ``round`` centre offsets).
    * encoder: ``simplejpeg.encode_jpeg`` — libjpeg-turbo's TurboJPEG API, the same
      ``tjCompress2`` that PyTurboJPEG calls, with the same settings (quality 100, 4:2:0,
      ``fastdct=False``). 4:2:0 is DCTNet's own choice (``jpeg_subsample=2``), not an
      assumption, and it is what makes the x2 upscale necessary.
    * coefficient reader: :func:`freqdata.read_coefficients` instead of jpeg2dct (both:
      libjpeg ``jpeg_read_coefficients``, all 64 coefficients of every block).

    The result is the preset's channels as one ``(C, 56, 56)`` int16 cube (DCTNet's
    ``SubsetDCT`` + ``Aggregate``, without the float conversion and normalisation).
    """
    import simplejpeg
    from PIL import Image

    from freqdata.jpeg import read_coefficients

    with Image.open(io.BytesIO(b)) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    if (w <= h and w == DCTNET_RESIZE) or (h <= w and h == DCTNET_RESIZE):
        size = (w, h)  # DCTNet's resize returns the image unchanged
    elif w < h:
        size = (DCTNET_RESIZE, int(DCTNET_RESIZE * h / w))
    else:
        size = (int(DCTNET_RESIZE * w / h), DCTNET_RESIZE)
    if size != (w, h):
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    left = round((size[0] - DCTNET_CROP) * 0.5)
    top = round((size[1] - DCTNET_CROP) * 0.5)
    crop = rgb.crop((left, top, left + DCTNET_CROP, top + DCTNET_CROP))
    up_side = DCTNET_CROP * DCTNET_UPSCALE
    up = crop.resize((up_side, up_side), Image.Resampling.BILINEAR)
    jpeg_y = simplejpeg.encode_jpeg(np.asarray(crop), quality=100, colorspace="RGB",
                                    colorsubsampling="420", fastdct=False)
    jpeg_c = simplejpeg.encode_jpeg(np.asarray(up), quality=100, colorspace="RGB",
                                    colorsubsampling="420", fastdct=False)
    y = read_coefficients(jpeg_y).planes[0]
    c = read_coefficients(jpeg_c)
    parts = [y[..., y_sel], c.planes[1][..., c_sel], c.planes[2][..., c_sel]]
    return np.concatenate(parts, axis=-1).transpose(2, 0, 1)


def make_rows(preset: str) -> dict[str, Row]:
    """The benchmark rows for ``preset``: name → function of the file's bytes, in table order."""
    import simplejpeg
    from PIL import Image

    from freqdata.encode import encode_image
    from freqdata.presets import resolve_preset

    p = resolve_preset(preset)  # validates the name (ValueError) before anything runs
    y_sel = np.asarray(p.y, dtype=np.int64)
    c_sel = np.asarray(p.cb, dtype=np.int64)
    bilinear = Image.Resampling.BILINEAR

    def coeff(b: bytes) -> object:
        return encode_image(b, preset, "coeff", "none")

    def pixels_resnet(b: bytes) -> object:
        return encode_image(b, preset, "pixels", "resnet")

    def sj_rgb(b: bytes) -> object:
        return simplejpeg.decode_jpeg(b)

    def sj_rgb_224(b: bytes) -> object:
        return Image.fromarray(simplejpeg.decode_jpeg(b)).resize((RGB_SIZE, RGB_SIZE), bilinear)

    def pil_rgb_224(b: bytes) -> object:
        with Image.open(io.BytesIO(b)) as im:
            return im.convert("RGB").resize((RGB_SIZE, RGB_SIZE), bilinear)

    def dctnet(b: bytes) -> object:
        return _dctnet_style(b, y_sel, c_sel)

    rows: dict[str, Row] = {
        "coeff": coeff,
        "pixels-resnet": pixels_resnet,
        "simplejpeg-rgb": sj_rgb,
        "simplejpeg-rgb+resize224": sj_rgb_224,
        "pil-rgb+resize224": pil_rgb_224,
        "dctnet-style": dctnet,
    }
    assert tuple(rows) == ROW_NAMES
    return rows


# --------------------------------------------------------------------------- one core


def _mapped_libraries(pattern: str) -> list[str]:
    """Paths of shared objects mapped into this process whose file name matches ``pattern``."""
    found: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    if re.search(pattern, os.path.basename(path)) and path not in found:
                        found.append(path)
    except OSError:
        pass
    return found


_OPENBLAS_PREFIXES = ("scipy_openblas_", "openblas_")
_OPENBLAS_SUFFIXES = ("64_", "_64_", "")


def _openblas_handles() -> list[tuple[str, Any, Any]]:
    """``(path, set_num_threads, get_num_threads)`` for each OpenBLAS loaded in the process."""
    handles = []
    for path in _mapped_libraries(r"openblas"):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _OPENBLAS_PREFIXES:
            for suffix in _OPENBLAS_SUFFIXES:
                set_fn = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                get_fn = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                if set_fn is not None and get_fn is not None:
                    set_fn.argtypes, set_fn.restype = [ctypes.c_int], None
                    get_fn.argtypes, get_fn.restype = [], ctypes.c_int
                    handles.append((path, set_fn, get_fn))
                    break
            else:
                continue
            break
    return handles


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[dict[str, Any]]:
    """Limit numpy's BLAS to one thread inside the block; yields what was done (for the JSON).

    Uses ``threadpoolctl`` when installed, else OpenBLAS's ``set_num_threads`` through
    ctypes; restores the previous thread counts on exit. ``method == "none"`` means no
    known BLAS could be limited (then the cpu/wall ratios in the results tell).
    """
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        before = [(i.get("filepath"), i.get("num_threads")) for i in threadpool_info()]
        with threadpool_limits(limits=1, user_api="blas"):
            yield {"method": "threadpoolctl",
                   "libraries": [os.path.basename(p or "") for p, _ in before],
                   "threads_before": [n for _, n in before], "threads_during": 1}
        return
    handles = _openblas_handles()
    before = [get() for _, _, get in handles]
    for _, set_fn, _ in handles:
        set_fn(1)
    try:
        yield {
            "method": "openblas-ctypes" if handles else "none",
            "libraries": [os.path.basename(p) for p, _, _ in handles],  # no machine paths
            "threads_before": before,
            "threads_during": [get() for _, _, get in handles],
        }
    finally:
        for (_, set_fn, _), n in zip(handles, before, strict=True):
            set_fn(n)


# --------------------------------------------------------------------------- environment


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_details() -> dict[str, str]:
    """family / model / stepping / flags subset / MHz from /proc/cpuinfo (first CPU)."""
    keep = {"vendor_id", "cpu family", "model", "stepping", "cpu mhz", "cache size"}
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in keep:
                    out[key] = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    out["simd"] = " ".join(x for x in ("sse4_2", "avx", "avx2", "avx512f")
                                           if x in flags)
    except OSError:
        pass
    return out


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def hardware_info() -> dict[str, Any]:
    """CPU model and counts, memory, OS, load average (what the figures were measured on)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": _cpu_model(),
        "cpu": _cpu_details(),
        "logical_cpus": os.cpu_count(),
        "cpus_available": affinity,
        "cores_used": 1,
        "memory_gib": _mem_total_gib(),
        "platform": platform.platform(),
        "loadavg_at_start": load,
        "gpu": None,  # CPU-only benchmark
    }


def _libjpeg_versions() -> dict[str, str]:
    """libjpeg-turbo version string of each loaded shared object that embeds one."""
    out: dict[str, str] = {}
    rx = re.compile(rb"libjpeg-turbo version ([0-9][0-9.]*[0-9])")
    for path in _mapped_libraries(r"jpeg"):
        try:
            with open(path, "rb") as f:
                m = rx.search(f.read())
        except OSError:
            continue
        if m:
            out[os.path.basename(path)] = m.group(1).decode()  # no machine paths
    return out


def software_info() -> dict[str, Any]:
    """Python, numpy, Pillow, simplejpeg, freqdata and libjpeg(-turbo) versions, BLAS."""
    import PIL
    import simplejpeg
    from PIL import features

    import freqdata

    blas: Any = None
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg.get("Build Dependencies", {}).get("blas", {})
        blas = {k: b.get(k) for k in ("name", "version", "openblas configuration")}
    except Exception:  # numpy < 1.25 or an unusual build: not worth failing a benchmark
        blas = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "pillow_libjpeg": features.version("jpg"),
        "pillow_libjpeg_turbo": features.version("libjpeg_turbo"),
        "simplejpeg": getattr(simplejpeg, "__version__", None),
        "freqdata": freqdata.__version__,
        "libjpeg_turbo_loaded": _libjpeg_versions(),
        "blas": blas,
    }


# --------------------------------------------------------------------------- run


def find_jpegs(folder: Path) -> list[Path]:
    """``*.jpg`` / ``*.jpeg`` (any case) under ``folder``, recursively, sorted by relative path."""
    folder = Path(folder)
    found = [p for p in folder.rglob("*") if p.suffix.lower() in JPEG_SUFFIXES and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _time_pass(fn: Row, data: list[bytes]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn`` over all of ``data``, GC off."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        for b in data:
            fn(b)
        t1, c1 = time.perf_counter(), time.process_time()
    finally:
        if was_enabled:
            gc.enable()
    return t1 - t0, c1 - c0


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b > 0 else None


def run_decode_bench(
    folder: str | os.PathLike[str],
    *,
    limit: int = 200,
    repeats: int = 3,
    preset: str = "dctnet-24",
    label: str | None = None,
    command: str | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the decode benchmark on the JPEGs under ``folder``; returns the JSON-ready result.

    ``limit``: how many usable files (first in sorted order; files a row fails on are
    skipped and do not count). ``repeats``: timed passes (the median is reported).
    ``on_progress(stage, done, total)`` is called between (never inside) timed loops.

    Files are grouped by :func:`chroma_sampling`; each row is timed group by group (the
    row's total is their sum) and ``by_sampling`` reports every group on its own, since the
    coefficient path's cost depends on the sampling (4:2:0 chroma needs upsampling).
    Ratios are of wall-clock medians (the targets); ``cpu_ratio_*`` are the same of this
    process's CPU time, the steadier figure when other processes share the machine.

    Raises :class:`freqdata.errors.UsageError` for bad options (``limit``/``repeats`` < 1,
    unknown preset), :class:`NoImagesError` (a ``UsageError``) when no usable JPEG is found.
    """
    if limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    if repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {repeats}")
    folder = Path(folder)
    if not folder.is_dir():
        raise NoImagesError(f"{folder} is not a folder")
    rows = make_rows(preset)
    candidates = find_jpegs(folder)
    if not candidates:
        raise NoImagesError(f"no *.jpg / *.jpeg files under {folder}")
    report = on_progress or (lambda stage, done, total: None)

    # validation (and warm-up) pass: every row once on each file, until `limit` files pass
    data: list[bytes] = []
    names: list[str] = []
    kinds: list[str] = []  # chroma sampling of each file in data
    skipped: list[dict[str, str]] = []
    for i, path in enumerate(candidates):
        if len(data) >= limit:
            break
        rel = path.relative_to(folder).as_posix()
        try:
            b = path.read_bytes()
        except OSError as e:
            skipped.append({"path": rel, "row": "read", "reason": f"{type(e).__name__}: {e}"})
            continue
        for name, fn in rows.items():
            try:
                fn(b)
            except Exception as e:  # any failure of any row disqualifies the file
                skipped.append({"path": rel, "row": name, "reason": f"{type(e).__name__}: {e}"})
                break
        else:
            data.append(b)
            names.append(rel)
            kinds.append(chroma_sampling(b))
        report("validate", i + 1, min(len(candidates), limit + len(skipped)))
    if not data:
        raise NoImagesError(
            f"none of the {len(candidates)} JPEGs under {folder} could be processed by every "
            f"row (first failure: {skipped[0]['path']}: {skipped[0]['reason']})"
        )

    n = len(data)
    order = [g for g in SAMPLINGS if g in kinds] + sorted(set(kinds) - set(SAMPLINGS))
    groups = {g: [b for b, kind in zip(data, kinds, strict=True) if kind == g] for g in order}
    totals: dict[str, list[float]] = {name: [] for name in rows}
    cpu: dict[str, list[float]] = {name: [] for name in rows}
    group_totals = {g: {name: [] for name in rows} for g in groups}
    group_cpu = {g: {name: [] for name in rows} for g in groups}
    started = _dt.datetime.now(_dt.UTC)
    meter = OtherLoad()
    with single_threaded_blas() as blas:
        for r in range(repeats):
            for k, (name, fn) in enumerate(rows.items()):
                wall = proc = 0.0
                for g, files in groups.items():
                    w, c = _time_pass(fn, files)
                    group_totals[g][name].append(w)
                    group_cpu[g][name].append(c)
                    wall, proc = wall + w, proc + c
                totals[name].append(wall)
                cpu[name].append(proc)
                report("time", r * len(rows) + k + 1, repeats * len(rows))
    seconds = (_dt.datetime.now(_dt.UTC) - started).total_seconds()
    other_load = meter.fraction()  # CPU other processes used meanwhile, share of the machine

    med = {name: statistics.median(t) for name, t in totals.items()}
    results: dict[str, Any] = {}
    for name in rows:
        ms = 1000.0 * med[name] / n
        results[name] = {
            "description": ROW_DESCRIPTIONS[name],
            "ms_per_image": round(ms, 4),
            "ms_per_image_min": round(1000.0 * min(totals[name]) / n, 4),
            "images_per_s": round(n / med[name], 2) if med[name] > 0 else None,
            "repeat_totals_s": [round(t, 6) for t in totals[name]],
            "repeat_cpu_s": [round(t, 6) for t in cpu[name]],
            "cpu_over_wall": _ratio(sum(cpu[name]), sum(totals[name])),
            "ratio_to_simplejpeg_rgb": _ratio(med[name], med[BASELINE]),
            "ratio_to_dctnet_style": _ratio(med[name], med[ANCHOR]),
            "cpu_ratio_to_simplejpeg_rgb": _ratio(
                statistics.median(cpu[name]), statistics.median(cpu[BASELINE])
            ),
        }
    by_sampling: dict[str, Any] = {}
    for g, files in groups.items():
        gmed = {name: statistics.median(t) for name, t in group_totals[g].items()}
        gcpu = {name: statistics.median(t) for name, t in group_cpu[g].items()}
        by_sampling[g] = {
            "n": len(files),
            "rows": {
                name: {
                    "ms_per_image": round(1000.0 * gmed[name] / len(files), 4),
                    "repeat_totals_s": [round(t, 6) for t in group_totals[g][name]],
                    "ratio_to_simplejpeg_rgb": _ratio(gmed[name], gmed[BASELINE]),
                    "cpu_ms_per_image": round(1000.0 * gcpu[name] / len(files), 4),
                    "cpu_ratio_to_simplejpeg_rgb": _ratio(gcpu[name], gcpu[BASELINE]),
                }
                for name in rows
            },
        }
    targets = []
    for t in TARGETS:
        if t.sampling is None:
            ratio: float | None = med[t.row] / med[t.versus] if med[t.versus] > 0 else None
        elif t.sampling in by_sampling:
            ratio = by_sampling[t.sampling]["rows"][t.row]["ratio_to_simplejpeg_rgb"]
        else:
            ratio = None  # no file of that sampling in this run: N/A
        targets.append({
            "name": t.name,
            "text": t.text,
            "row": t.row,
            "versus": t.versus,
            "sampling": t.sampling,
            "ratio": None if ratio is None else round(ratio, 4),
            "limit": t.limit,
            "pass": None if ratio is None else bool(ratio <= t.limit),
        })
    hardware = hardware_info()
    try:
        hardware["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        hardware["loadavg_at_end"] = None
    hardware["other_processes_cpu_fraction"] = other_load
    return {
        "benchmark": "decode",
        "label": label,
        "command": command,
        "created": started.isoformat(timespec="seconds"),
        "seconds_timed": round(seconds, 3),
        "hardware": hardware,
        "software": software_info(),
        "settings": {
            "folder": str(folder),
            "preset": preset,
            "limit": limit,
            "repeats": repeats,
            "statistic": "median of per-pass totals / n files (per sampling group: the "
                         "group's own median)",
            "gc_disabled_in_loops": True,
            "serial_single_process": True,
            "blas_threads": blas,
        },
        "files": {
            "found": len(candidates),
            "n": n,
            "skipped": skipped,
            "bytes_total": sum(len(b) for b in data),
            "by_sampling": {g: len(files) for g, files in groups.items()},
            "first": names[0],
            "last": names[-1],
        },
        "baseline": BASELINE,
        "anchor": ANCHOR,
        "rows": results,
        "by_sampling": by_sampling,
        "targets": targets,
        "all_targets_pass": all(t["pass"] for t in targets if t["pass"] is not None),
    }


# --------------------------------------------------------------------------- output


def render_table(result: dict[str, Any]) -> Any:
    """The tables of a :func:`run_decode_bench` result (printable with rich): one line per
    row over all files, then one line per chroma sampling (each row's ratio to the
    baseline on those files alone)."""
    from rich.console import Group
    from rich.table import Table

    hw = result["hardware"]
    files = result["files"]
    title = (f"freqdata bench decode — {files['n']} files, median of "
             f"{result['settings']['repeats']} passes, 1 core")
    caption = f"{hw['cpu_model']} ({hw['logical_cpus']} logical CPUs)"
    if result.get("label"):
        caption += f" — {result['label']}"
    caption += f"\ntime ratios: x baseline = / {BASELINE}, x anchor = / {ANCHOR}"
    table = Table(title=title, caption=caption)
    table.add_column("row", no_wrap=True)
    table.add_column("ms/image", justify="right", no_wrap=True)
    table.add_column("images/s", justify="right", no_wrap=True)
    table.add_column("x baseline", justify="right", no_wrap=True)
    table.add_column("x anchor", justify="right", no_wrap=True)
    table.add_column("cpu/wall", justify="right", no_wrap=True)
    for name, r in result["rows"].items():
        style = "bold" if name in (BASELINE, ANCHOR) else None
        table.add_row(
            name,
            f"{r['ms_per_image']:.2f}",
            f"{r['images_per_s']:.1f}" if r["images_per_s"] else "-",
            f"{r['ratio_to_simplejpeg_rgb']:.2f}",
            f"{r['ratio_to_dctnet_style']:.3f}",
            f"{r['cpu_over_wall']:.2f}" if r["cpu_over_wall"] else "-",
            style=style,
        )
    per = Table(title="per chroma sampling: x baseline on those files alone")
    per.add_column("sampling", no_wrap=True)
    per.add_column("files", justify="right", no_wrap=True)
    per.add_column(f"{BASELINE} ms", justify="right", no_wrap=True)
    others = [name for name in result["rows"] if name != BASELINE]
    for name in others:
        per.add_column(name, justify="right")
    for g, group in result.get("by_sampling", {}).items():
        rows = group["rows"]
        per.add_row(g, str(group["n"]), f"{rows[BASELINE]['ms_per_image']:.2f}",
                    *(f"{rows[name]['ratio_to_simplejpeg_rgb']:.2f}" for name in others))
    return Group(table, per)


def target_lines(result: dict[str, Any]) -> list[str]:
    """One ``PASS``/``FAIL`` line (rich markup) per target, then the skipped-file summary."""
    from rich.markup import escape

    lines = []
    for t in result["targets"]:
        if t["pass"] is None:
            lines.append(f"[bold]N/A[/]  {t['text']}: no such file in this run")
            continue
        tag = "[bold green]PASS[/]" if t["pass"] else "[bold red]FAIL[/]"
        r = t["ratio"]
        speed = f" ({1 / r:.2f}x faster)" if 0 < r <= 1 else f" ({r:.2f}x slower)"
        lines.append(f"{tag} {t['text']}: time ratio {t['ratio']:.3f} "
                     f"(limit {t['limit']}){speed}")
    busy = [name for name, r in result["rows"].items()
            if r["cpu_over_wall"] is not None and r["cpu_over_wall"] < BUSY_CPU_OVER_WALL]
    other = result["hardware"].get("other_processes_cpu_fraction")
    if busy:
        lines.append(escape(
            f"WARNING: cpu/wall < {BUSY_CPU_OVER_WALL} for {', '.join(busy)}: this process "
            f"was not on a CPU all the time (other processes used {other} of the machine's "
            "CPU); the figures are unreliable, re-run on an idle machine"))
    elif busy_line(other) is not None:
        lines.append(escape(busy_line(other)))
    skipped = result["files"]["skipped"]
    if skipped:
        lines.append(f"skipped {len(skipped)} file(s):")
        lines.extend(escape(f"  {s['path']} ({s['row']}): {s['reason']}") for s in skipped[:20])
        if len(skipped) > 20:
            lines.append(f"  ... and {len(skipped) - 20} more (see the JSON)")
    else:
        lines.append("skipped 0 files")
    return lines
