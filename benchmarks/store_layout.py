"""Measure chunking/compression options for fixed-geometry cubes: size and random-access reads.

    .venv/bin/python benchmarks/store_layout.py [IMAGE_DIR] [--samples N] [--json PATH]

Encodes real JPEGs (pixel path, resnet geometry, dctnet-24) once, writes the same cubes with
each layout, then reads samples in a random order (one sample per read, as a training loader
does) and reports samples/s and bytes on disk. Baseline in the same run: uncompressed, one
sample per chunk. Single process.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec

from freqdata import encode_image

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared/data/images-seg/coco-mini/val2017"


def layouts() -> dict[str, dict]:
    blosc = BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle, typesize=2)
    zstd1 = BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.shuffle, typesize=2)
    lz4 = BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle, typesize=2)
    return {
        "chunk1-raw (baseline)": {"chunk": 1, "shard": None, "compressors": None},
        "chunk1-zstd3": {"chunk": 1, "shard": None, "compressors": ZstdCodec(level=3)},
        "chunk1-blosc-zstd3-shuffle": {"chunk": 1, "shard": None, "compressors": blosc},
        "chunk1-blosc-lz4-shuffle": {"chunk": 1, "shard": None, "compressors": lz4},
        "chunk16-blosc-zstd3-shuffle": {"chunk": 16, "shard": None, "compressors": blosc},
        "chunk1-shard64-blosc-zstd3-shuffle": {"chunk": 1, "shard": 64, "compressors": blosc},
        "chunk1-shard64-blosc-zstd1-shuffle": {"chunk": 1, "shard": 64, "compressors": zstd1},
        "chunk1-shard64-blosc-lz4-shuffle": {"chunk": 1, "shard": 64, "compressors": lz4},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    files = sorted(args.images.rglob("*.jpg"))[:128]
    cubes = np.stack([encode_image(f, "dctnet-24", "pixels", "resnet") for f in files])
    data = np.concatenate([cubes] * (args.samples // len(cubes) + 1))[: args.samples]
    order = np.random.default_rng(0).permutation(args.samples)
    rows = []
    tmp = Path(tempfile.mkdtemp())
    try:
        for name, lay in layouts().items():
            path = tmp / f"{len(rows)}.zarr"
            shape = data.shape[1:]
            arr = zarr.create_array(
                str(path),
                shape=data.shape,
                dtype=data.dtype,
                chunks=(lay["chunk"], *shape),
                shards=(lay["shard"], *shape) if lay["shard"] else None,
                compressors=lay["compressors"],
                fill_value=0,
            )
            t0 = time.perf_counter()
            arr[:] = data
            write_s = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            files_n = sum(1 for f in path.rglob("*") if f.is_file())
            reader = zarr.open_array(str(path), mode="r")
            t0 = time.perf_counter()
            for i in order:
                reader[int(i)]
            read_s = time.perf_counter() - t0
            rows.append(
                {
                    "layout": name,
                    "bytes": size,
                    "files": files_n,
                    "ratio": data.nbytes / size,
                    "write_s": write_s,
                    "random_read_samples_per_s": len(order) / read_s,
                }
            )
    finally:
        shutil.rmtree(tmp)
    base = rows[0]["random_read_samples_per_s"]
    print(
        f"{'layout':38s} {'MiB':>7s} {'files':>6s} {'compr.':>7s} "
        f"{'samples/s':>10s} {'vs base':>8s}"
    )
    for r in rows:
        r["read_vs_baseline"] = r["random_read_samples_per_s"] / base
        print(
            f"{r['layout']:38s} {r['bytes'] / 2**20:7.1f} {r['files']:6d} {r['ratio']:6.2f}x "
            f"{r['random_read_samples_per_s']:10.0f} {r['read_vs_baseline']:7.2f}x"
        )
    info = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "zarr": zarr.__version__,
        "samples": args.samples,
        "sample_shape": list(data.shape[1:]),
        "images": str(args.images),
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
