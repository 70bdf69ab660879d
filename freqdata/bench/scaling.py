"""Images/s of the distributed encoder versus the number of Dask workers on this machine.

``python -m freqdata.bench.scaling SRC [--workers 1,2] [--geometry resnet] [--json OUT]``
``python -m freqdata.bench.scaling instances.json --masks [--weak 8,16,32]`` (mask encoder:
``single`` and ``dask-N`` only; figures per image and per instance)

Every configuration encodes the same inputs into a fresh store under a temporary folder:

* ``single``: :func:`freqdata.job.encode_images` in this process (``workers=0``) — the
  baseline every other figure is divided by;
* ``pool-N``: the same with its own pool of N processes (what one machine does without Dask);
* ``dask-N``: :func:`freqdata.distributed.encode_distributed` on a LocalCluster of N
  single-threaded worker processes. The cluster is started before the clock starts
  (``cluster_start_s`` is reported apart): on a real cluster it is already running.

Each figure is the best of ``--repeat`` runs. The report says where scaling stops and why:
the CPUs this process may use (``os.sched_getaffinity``) bound the useful worker count, and
the two-round design costs a second write of every sample (``copy`` overhead, measured as
the gap between ``dask-1`` and ``single``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from freqdata.job import EncodeOptions, encode_images
from freqdata.sources import list_sources


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _best(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@contextmanager
def _cluster(w: int) -> Iterator[tuple[Any, float]]:
    """A LocalCluster of ``w`` single-threaded workers, freqdata imported on each: (client,
    start-up seconds)."""
    from distributed import Client, LocalCluster

    from freqdata.distributed import local_worker_env

    t0 = time.perf_counter()
    with (
        local_worker_env(),
        LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0")
        as cluster,
        Client(cluster) as client,
    ):
        start = time.perf_counter() - t0
        client.run(lambda: __import__("freqdata.encode"))  # imports out of the clock
        client.run(lambda: __import__("freqdata.masks.store"))
        yield client, start


def run(
    src: str | Path,
    workers: list[int],
    opts: EncodeOptions,
    *,
    limit: int | None = None,
    repeat: int = 1,
    task_inputs: int = 32,
) -> dict[str, Any]:
    """Measure every configuration on the inputs of ``src`` (the first ``limit``)."""
    from freqdata.distributed import encode_distributed

    sources = list_sources(src)
    if limit:
        from freqdata.sources import Sources

        sources = Sources(sources.paths[:limit], sources.labels[:limit], sources.class_names)
    n = len(sources)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="freqdata-scaling-") as tmp:
        out = Path(tmp) / "s.zarr"

        def fresh() -> Path:
            shutil.rmtree(out, ignore_errors=True)
            return out

        encoded = encode_images(sources, fresh(), opts).encoded  # warm caches and imports
        s = _best(lambda: encode_images(sources, fresh(), opts), repeat)
        rows.append({"config": "single", "workers": 1, "seconds": s})
        for w in workers:
            if w > 1:
                s = _best(lambda w=w: encode_images(sources, fresh(), opts, workers=w), repeat)
                rows.append({"config": f"pool-{w}", "workers": w, "seconds": s})
        for w in workers:
            with _cluster(w) as (client, start):
                s = _best(
                    lambda client=client: encode_distributed(
                        sources, fresh(), opts, scheduler=client, task_inputs=task_inputs
                    ),
                    repeat,
                )
            rows.append(
                {"config": f"dask-{w}", "workers": w, "seconds": s, "cluster_start_s": start}
            )
    return _report(rows, encoded, {
        "inputs": n, "options": vars(opts), "task_inputs": task_inputs, "repeat": repeat})


def run_masks(
    annotations: str | Path,
    workers: list[int],
    *,
    weak: tuple[int, ...] = (8, 16, 32),
    batch_images: int = 8,
    repeat: int = 1,
) -> dict[str, Any]:
    """The mask encoder (:func:`freqdata.masks.encode_masks`) in this process and with
    ``scheduler=`` LocalClusters of each size; ``images_per_s`` counts annotated images."""
    from freqdata.masks import encode_masks

    with tempfile.TemporaryDirectory(prefix="freqdata-scaling-") as tmp:
        out = Path(tmp) / "m.zarr"

        def encode(client: Any = None) -> Any:
            shutil.rmtree(out, ignore_errors=True)
            return encode_masks(annotations, out, weak=weak, batch_images=batch_images,
                                scheduler=client)

        first = encode()  # warm caches and imports
        rows = [{"config": "single", "workers": 1, "seconds": _best(encode, repeat)}]
        for w in workers:
            with _cluster(w) as (client, start):
                encode(client)  # the workers' first batches import and warm up
                s = _best(lambda client=client: encode(client), repeat)
            rows.append({"config": f"dask-{w}", "workers": w, "seconds": s,
                         "cluster_start_s": start})
    for r in rows:
        r["instances_per_s"] = first.instances / r["seconds"]
    return _report(rows, first.images, {
        "inputs": first.images, "instances": first.instances, "weak": list(weak),
        "batch_images": batch_images, "repeat": repeat})


def _report(rows: list[dict[str, Any]], encoded: int, info: dict[str, Any]) -> dict[str, Any]:
    """Ratios against ``single`` and the notes on where scaling stops."""
    base = rows[0]["seconds"]
    for r in rows:
        r["images_per_s"] = encoded / r["seconds"]
        r["speedup"] = base / r["seconds"]
        r["per_worker_images_per_s"] = r["images_per_s"] / r["workers"]
    cpus = _cpus()
    dask = [r for r in rows if r["config"].startswith("dask-")]
    note = [
        f"{cpus} CPUs available to this process (os.sched_getaffinity); workers beyond that "
        "share cores, so images/s cannot grow past it."
    ]
    if dask:
        d1 = dask[0]
        note.append(
            f"dask-{d1['workers']} runs at {d1['speedup']:.2f}x single: the client/scheduler "
            "overhead (images: and the second write of every sample, the round-2 copy into "
            "the final shards; masks: shipping each batch's arrays to the writing client)."
        )
    if len(dask) > 1:
        first, last = dask[0], dask[-1]
        eff = (last["images_per_s"] / first["images_per_s"]) / (last["workers"] / first["workers"])
        note.append(
            f"dask-{first['workers']} → dask-{last['workers']}: parallel efficiency {eff:.0%}"
            + (
                " (the client process and the scheduler take CPU from the workers, and the"
                " machine is shared)"
                if eff < 0.9
                else ""
            )
        )
    return {**info, "encoded": encoded, "cpus": cpus, "results": rows, "scaling": note}


def main(argv: list[str] | None = None) -> None:
    """Command line: print a table (and write JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", help="folder of images, a text file of paths, or (--masks) a COCO "
                    "instances JSON file")
    ap.add_argument("--masks", action="store_true", help="benchmark encode masks instead")
    ap.add_argument("--weak", default="8,16,32", help="--masks: nu_max of the weak labels")
    ap.add_argument("--batch-images", type=int, default=8, help="--masks: images per task")
    ap.add_argument("--workers", default="1,2", help="LocalCluster sizes, comma-separated")
    ap.add_argument("--path", default="pixels")
    ap.add_argument("--geometry", default="resnet")
    ap.add_argument("--preset", default="dctnet-24")
    ap.add_argument("--limit", type=int, default=None, help="first N inputs only")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--task-inputs", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    workers = [int(x) for x in a.workers.split(",")]
    if a.masks:
        weak = tuple(int(x) for x in a.weak.split(",") if x)
        rep = run_masks(a.src, workers, weak=weak, batch_images=a.batch_images, repeat=a.repeat)
        print(f"{rep['encoded']} images, {rep['instances']} instances, weak {list(weak)}, "
              f"{rep['cpus']} CPUs")
    else:
        opts = EncodeOptions(preset=a.preset, path=a.path, geometry=a.geometry)
        rep = run(a.src, workers, opts, limit=a.limit, repeat=a.repeat,
                  task_inputs=a.task_inputs)
        print(f"{rep['encoded']} images encoded of {rep['inputs']}, {rep['cpus']} CPUs, {opts}")
    print(f"{'config':<10}{'seconds':>9}{'images/s':>10}{'speedup':>9}{'per worker':>12}")
    for r in rep["results"]:
        print(
            f"{r['config']:<10}{r['seconds']:>9.2f}{r['images_per_s']:>10.1f}"
            f"{r['speedup']:>9.2f}{r['per_worker_images_per_s']:>12.1f}"
        )
    for line in rep["scaling"]:
        print("-", line)
    if a.json:
        a.json.write_text(json.dumps(rep, indent=2))


if __name__ == "__main__":
    main()
