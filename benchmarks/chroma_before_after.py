"""The coefficient path before and after issue 15's chroma fast path, in one process.

    .venv/bin/python benchmarks/chroma_before_after.py FOLDER [FOLDER ...] [--json PATH]

Rows, per chroma sampling (``freqdata.bench.decode.chroma_sampling``), CPU time of this
process (steadier than wall time on a shared machine), median of 5 interleaved passes, BLAS
limited to one thread:

* ``simplejpeg-rgb``: the baseline (RGB decode);
* ``read_coefficients``: the coefficient reader alone (the floor of the path);
* ``coeff-before``: the previous computation — ``read_coefficients``, numpy gathers, and
  for subsampled chroma one float64 GEMM per output phase over *all* output coefficients of
  every block, then a concatenation (the reference kept in ``tests/test_chroma_fast.py``);
* ``coeff-after``: ``encode_image(b, "dctnet-24", "coeff", "none")`` today.

Every file is first checked to give identical cubes both ways.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import simplejpeg

from freqdata.bench.decode import chroma_sampling, find_jpegs, single_threaded_blas
from freqdata.encode import encode_image
from freqdata.jpeg import read_coefficients
from freqdata.presets import resolve_preset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_chroma_fast import _old_cube  # the previous computation

PRESET = resolve_preset("dctnet-24")


def before(b: bytes) -> np.ndarray:
    """``encode_image(b, "dctnet-24", "coeff", "none")`` as computed before issue 15."""
    c = read_coefficients(b)
    y = np.ascontiguousarray(c.planes[0][..., PRESET.y].transpose(2, 0, 1))
    if len(c.planes) == 1:
        zero = np.zeros((len(PRESET.cb), *y.shape[1:]), np.int16)
        return np.concatenate([y, zero, zero])
    chroma = [
        _old_cube(c, comp, sel)
        if c.sampling[comp] != c.sampling[0]
        else np.ascontiguousarray(c.planes[comp][..., sel].transpose(2, 0, 1))
        for comp, sel in ((1, PRESET.cb), (2, PRESET.cr))
    ]
    return np.concatenate([y, *chroma])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = {
        "simplejpeg-rgb": simplejpeg.decode_jpeg,
        "read_coefficients": read_coefficients,
        "coeff-before": before,
        "coeff-after": lambda b: encode_image(b, PRESET, "coeff", "none"),
    }
    groups: dict[str, list[bytes]] = {}
    for folder in args.folders:
        for p in find_jpegs(folder):
            b = p.read_bytes()
            groups.setdefault(chroma_sampling(b), []).append(b)
    for data in groups.values():
        for b in data:
            np.testing.assert_array_equal(before(b), rows["coeff-after"](b))
    times: dict[str, dict[str, list[float]]] = {g: {r: [] for r in rows} for g in groups}
    load0 = os.getloadavg()
    with single_threaded_blas():
        for _ in range(args.repeats):
            for g, data in groups.items():
                for name, fn in rows.items():
                    gc.disable()
                    t0 = time.process_time()
                    for b in data:
                        fn(b)
                    times[g][name].append((time.process_time() - t0) / len(data))
                    gc.enable()
    result: dict[str, object] = {"loadavg_start": load0, "loadavg_end": os.getloadavg()}
    for g, t in times.items():
        med = {name: statistics.median(v) for name, v in t.items()}
        base = med["simplejpeg-rgb"]
        result[g] = {"n": len(groups[g])} | {
            name: {"cpu_ms": round(1e3 * m, 3), "x_rgb": round(m / base, 3)}
            for name, m in med.items()
        }
        print(
            f"{g:6s} n={len(groups[g]):4d}  "
            + "  ".join(f"{name} {1e3 * m:.2f} ms ({m / base:.2f}x)" for name, m in med.items())
        )
    print(f"load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
