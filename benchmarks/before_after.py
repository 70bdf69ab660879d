"""Encode rate and loader speed of two freqdata versions, measured alternately in one run.

Usage (from the repository root, with the development environment)::

    git worktree add /tmp/freqdata-old REV            # the version to compare with
    (cd /tmp/freqdata-old && ../path/to/.venv/bin/python setup.py build_ext --inplace)
    python benchmarks/before_after.py /tmp/freqdata-old SRC --json docs/results/X.json

Each repeat runs the old tree (``PYTHONPATH=OLD``) and this checkout in fresh processes, one
after the other: ``encode_images(SRC, ..., EncodeOptions(path="pixels", geometry="resnet"))``
inline and with two worker processes (images/s, wall and CPU seconds of the process and its
children), then ``make_loader(store, batch_size=256, threads=1)`` over that store (samples/s
for ``--epochs`` epochs, wall and CPU). The figures are medians over ``--repeats``; ratios
``new / old`` are what carries over between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, shutil, sys, time
from freqdata.job import EncodeOptions, encode_images
from freqdata import make_loader

src, out, workers, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

shutil.rmtree(out, ignore_errors=True)
opts = EncodeOptions(path="pixels", geometry="resnet")
t0, c0 = time.perf_counter(), cpu()
summary = encode_images(src, out, opts, workers=workers)
enc = {"images": summary.encoded, "wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0}
loader = make_loader(out, batch_size=256, threads=1, num_workers=0, shuffle=True, seed=0)
n, t0, c0 = 0, time.perf_counter(), cpu()
for epoch in range(epochs):
    loader.set_epoch(epoch)
    for batch in loader:
        n += len(batch["labels"])
load = {"samples": n, "wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0}
print(json.dumps({"encode": enc, "loader": load}))
"""


def _run(tree: str | None, src: str, out: str, workers: int, epochs: int) -> dict:
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    cmd = [sys.executable, "-c", CHILD, src, out, str(workers), str(epochs)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _rates(runs: list[dict]) -> dict:
    enc = [r["encode"] for r in runs]
    load = [r["loader"] for r in runs]
    return {
        "encode_images_per_s": statistics.median(e["images"] / e["wall_s"] for e in enc),
        "encode_images_per_cpu_s": statistics.median(e["images"] / e["cpu_s"] for e in enc),
        "loader_samples_per_s": statistics.median(x["samples"] / x["wall_s"] for x in load),
        "loader_samples_per_cpu_s": statistics.median(x["samples"] / x["cpu_s"] for x in load),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="a checkout of the old version with its C extension built")
    ap.add_argument("src", help="images to encode (a folder or list file)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result: dict = {
        "command": " ".join(sys.argv),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "load_average_at_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (0, 2):
            runs: dict[str, list[dict]] = {"old": [], "new": []}
            for _ in range(args.repeats):
                for name, tree in (("old", args.old), ("new", None)):
                    out = str(Path(tmp) / f"{name}.zarr")
                    runs[name].append(_run(tree, args.src, out, workers, args.epochs))
            old, new = _rates(runs["old"]), _rates(runs["new"])
            result[f"workers={workers}"] = {
                "old": old, "new": new, "new_over_old": {k: new[k] / old[k] for k in old},
            }
    result["load_average_at_end"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
