"""Check a whole store: :func:`verify_store` reads every chunk and every committed row and
reports what is damaged (``freqdata inspect OUT --verify``).

What is checked (docs/store.md, "Integrity"), for image stores (with their ``masks`` group,
if any), mask stores and RGB stores:

* every array holds every committed row and every stored object (chunk or shard) holding
  one exists: samples for the per-sample arrays, the used elements of the ragged flat data,
  images and instances for mask stores, the channels of the statistics;
* every stored object decodes and, for format 2, matches its crc32c (a shard's index too);
  a damaged shard is read again sample by sample so that the report names each sample;
* the index is consistent: ragged ``offset`` / ``shape`` describe consecutive slices that fit
  in the data, with the part's channel count; labels are -1 or a class; ``source_index``
  increases and stays below the inputs consumed; mask instances are sorted by image and
  point at the image table's rows;
* statistics are finite and count exactly the blocks (pixels for RGB) of the samples stored
  (a resume that counted a batch twice shows here) and equal the commit record's;
* the store is complete (an interrupted encode is reported until it is resumed).

Format 1 stores carry no checksums and did not store chunks equal to the fill value: the
report says so in a note, and what cannot be told apart from data is not checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from freqdata.errors import StoreError
from freqdata.masks.store import FORMAT as MASK_FORMAT
from freqdata.masks.store import IMAGE_ARRAYS, INSTANCE_ARRAYS
from freqdata.shards import ShardReader, samples_text
from freqdata.store.layout import absent_objects, has_checksums, is_url, object_key, storage_rows
from freqdata.store.reader import absent_in_shard, read_checked
from freqdata.store.rgb import RGB_FORMAT
from freqdata.store.spec import FORMAT

KINDS = {FORMAT: "image store", RGB_FORMAT: "RGB store", MASK_FORMAT: "mask store"}


@dataclass
class Problem:
    """One damage found: the ``array`` (path in the store, "" for the store itself), which
    ``rows`` it affects (e.g. ``samples 64-127``) and what is wrong."""

    array: str
    rows: str
    message: str

    def __str__(self) -> str:
        where = " ".join(x for x in (f"{self.array}:" if self.array else "", self.rows) if x)
        return f"{where}: {self.message}" if where else self.message


@dataclass
class VerifyReport:
    """What :func:`verify_store` found. ``ok`` when ``problems`` is empty; ``notes`` say what
    could not be checked (format 1 arrays)."""

    path: str
    kind: str
    format_version: int
    samples: int
    arrays: int = 0
    objects: int = 0  # stored objects (chunks, shards) read and checked
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, array: str, rows: str, message: str) -> None:
        self.problems.append(Problem(array, rows, message))

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.path, "kind": self.kind, "format_version": self.format_version,
            "samples": self.samples, "arrays": self.arrays, "objects": self.objects,
            "ok": self.ok, "problems": [vars(p) for p in self.problems], "notes": self.notes,
        }  # fmt: skip

    def __str__(self) -> str:
        head = (
            f"{self.path}: {self.kind}, format {self.format_version}, {self.samples} samples, "
            f"{self.arrays} arrays, {self.objects} chunks/shards checked: "
            + ("OK" if self.ok else f"DAMAGED ({len(self.problems)} problem"
               f"{'s' if len(self.problems) > 1 else ''})")
        )
        return "\n".join([head, *(f"  {p}" for p in self.problems),
                          *(f"  note: {n}" for n in self.notes)])  # fmt: skip


def verify_store(path: str | Path) -> VerifyReport:
    """Read and check everything in the store at ``path`` (an image store, with its
    ``masks`` group if any, a mask store or an RGB store); see the module docstring.

    Damage is reported, not raised; raises :class:`~freqdata.errors.StoreError` only when
    ``path`` is not a freqdata store at all.
    """
    try:
        g = zarr.open_group(str(path), mode="r", zarr_format=3)
        attrs = g.attrs.get("freqdata")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, ValueError) as e:
        raise StoreError(f"{path} is not a freqdata store: {e}") from None
    if not isinstance(attrs, dict) or attrs.get("format") not in KINDS:
        raise StoreError(f"{path} is not a freqdata store (no freqdata attributes)")
    progress = attrs.get("progress", {})
    report = VerifyReport(str(path), KINDS[attrs["format"]], int(attrs.get("format_version", 1)),
                          int(progress.get("samples", 0)))
    if attrs["format"] == MASK_FORMAT:
        _Masks(report, g, attrs, "").run()
    else:
        samples = _Samples(report, g, attrs, str(path))
        samples.run()
        if "masks" in g:
            report.kind += " with masks"
            m = g["masks"]
            _Masks(report, m, m.attrs.get("freqdata", {}), "masks/", samples.n).run()
    return report


class _Checker:
    """Shared machinery: read every committed row of an array object by object."""

    def __init__(self, report: VerifyReport, g: zarr.Group, attrs: dict[str, Any],
                 prefix: str) -> None:
        self.report, self.g, self.attrs, self.prefix = report, g, attrs, prefix
        progress = attrs.get("progress", {})
        self.n = int(progress.get("samples", 0))
        self.inputs_done = int(progress.get("inputs_done", 0))
        self.complete = bool(progress.get("complete", False))
        self.unchecked: list[str] = []

    def add(self, name: str, rows: str, message: str) -> None:
        self.report.add(self.prefix + name, rows, message)

    def read(self, name: str, stop: int, unit: str,
             reader: Callable[[np.ndarray], None] | None = None,
             owners: Callable[[int, int], str] | None = None) -> np.ndarray | None:
        """All rows ``[0, stop)`` of array ``name`` (None if some are damaged: reported).
        ``reader(rows)``, when given, reads and checks rows itself instead of zarr (returns
        nothing: verification only); ``owners(lo, hi)`` names what rows ``[lo, hi)`` belong
        to (the samples of a ragged part's elements)."""
        if name not in self.g:
            self.add(name, "", "array missing")
            return None
        arr = self.g[name]
        self.report.arrays += 1
        if arr.shape[0] < stop:
            self.add(name, "", f"has {arr.shape[0]} {unit}s, {stop} are committed")
            return None
        checked = has_checksums(arr)
        if not checked:
            self.unchecked.append(name)
        per = storage_rows(arr)
        absent = set(absent_objects(arr, 0, stop)) if checked else set()
        out = None if reader else np.empty((stop, *arr.shape[1:]), arr.dtype)
        ok = True
        for k in range(math.ceil(stop / per)):
            lo, hi = k * per, min((k + 1) * per, stop)
            rows = np.arange(lo, hi)
            text = samples_text(rows, unit) + (f" ({owners(lo, hi)})" if owners else "")
            if k in absent:
                self.add(name, text, f"{object_key(arr, k)} is missing")
                ok = False
                continue
            self.report.objects += 1
            try:
                if reader:
                    reader(rows)
                else:
                    out[lo:hi] = read_checked(arr, lo, hi)
                    if checked and arr.shards is not None:  # zarr reads absent rows as fill
                        gone = lo + absent_in_shard(arr, k)
                        gone = gone[gone < hi]
                        if gone.size:
                            self.add(name, samples_text(gone, unit),
                                     "chunk absent from the shard index")
                            ok = False
            except (StoreError, ValueError, RuntimeError, OSError) as e:
                ok = False
                if arr.shards is None:  # one checksum for the whole chunk
                    self.add(name, text, _reason(e))
                else:
                    self._localize(name, arr, rows, unit, reader)
        return out if ok else None

    def _localize(self, name: str, arr: zarr.Array, rows: np.ndarray, unit: str,
                  reader: Callable[[np.ndarray], None] | None) -> None:
        """Re-read a damaged shard row by row (inner chunk by inner chunk) to name each
        damaged row."""
        bad: list[int] = []
        why = ""
        for r in rows:
            try:
                if reader:
                    reader(np.array([r]))
                else:
                    read_checked(arr, int(r), int(r) + 1)
            except (StoreError, ValueError, RuntimeError, OSError) as e:
                bad.append(int(r))
                why = why or _reason(e)
        if not bad:  # the object as a whole fails (a damaged shard index...)
            bad, why = list(rows), "cannot be read"
        self.add(name, samples_text(bad, unit), why)

    def note_unchecked(self) -> None:
        if self.unchecked:
            self.report.notes.append(
                f"{len(self.unchecked)} arrays of {self.prefix or 'the store'} have no checksums "
                "(format 1): damaged bytes may go unnoticed and missing chunks cannot be told "
                "from fill values; encode again to get format 2"
            )

    def check_complete(self) -> None:
        if not self.complete:
            self.add("", "", "incomplete: the encode was interrupted or is running (resume it)")

    def check_ragged(self, group: str, stop: int, unit: str, channels: int | None,
                     ) -> np.ndarray | None:
        """Offsets/shapes of the ragged group ``group`` (``stop`` rows) checked against each
        other and the flat data; returns the shapes (None if damaged)."""
        offsets = self.read(f"{group}/offset", stop, unit)
        shapes = self.read(f"{group}/shape", stop, unit)
        if offsets is None or shapes is None:
            self.read(f"{group}/data", self.g[f"{group}/data"].shape[0], "element")
            return None
        sizes = shapes.astype(np.int64).prod(axis=1)
        ends = np.cumsum(sizes)
        bad = np.flatnonzero((offsets != ends - sizes) | (shapes < 0).any(axis=1))
        if channels is not None:
            bad = np.union1d(bad, np.flatnonzero(shapes[:, 0] != channels))
        if bad.size:
            self.add(f"{group}/offset", samples_text(bad, unit),
                     "offset/shape do not describe consecutive slices of the data")
            return None
        end = int(ends[-1]) if stop else 0

        def owners(lo: int, hi: int) -> str:
            first, last = np.searchsorted(ends, [lo, hi - 1], side="right")
            return samples_text(range(int(first), int(last) + 1), unit)

        self.read(f"{group}/data", end, "element", owners=owners)
        return shapes


def _reason(e: BaseException) -> str:
    """The damage a read error describes, without where (the report says it)."""
    text = str(e).removesuffix("; freqdata inspect --verify lists all damage")
    return text.split(": ", 2)[-1] if text.startswith("damaged store") else text


class _Samples(_Checker):
    """Image and RGB stores."""

    def __init__(self, report: VerifyReport, g: zarr.Group, attrs: dict[str, Any],
                 path: str) -> None:
        super().__init__(report, g, attrs, "")
        self.path = path

    def run(self) -> None:
        n = self.n
        blocks: list[np.ndarray] = []  # per part: blocks per channel, (C_p,) counts
        for p in self.attrs.get("parts", []):
            name, channels, grid = p["name"], int(p["channels"]), p.get("grid")
            if grid:
                self._fixed(name, n)
                blocks.append(np.full(channels, float(n * grid[0] * grid[1])))
            else:
                shapes = self.check_ragged(name, n, "sample", channels)
                total = float(shapes[:, 1:].astype(np.int64).prod(axis=1).sum()) if (
                    shapes is not None) else math.nan
                blocks.append(np.full(channels, total))
        classes = len(self.attrs.get("class_names", []))
        labels = self.read("labels", n, "sample")
        if labels is not None and classes:
            bad = np.flatnonzero((labels < -1) | (labels >= classes))
            if bad.size:
                self.add("labels", samples_text(bad), f"not -1 or a class index < {classes}")
        source = self.read("source_index", n, "sample")
        if source is not None and n:
            bad = np.flatnonzero(np.diff(source) <= 0) + 1
            bad = np.union1d(bad, np.flatnonzero((source < 0) | (source >= self.inputs_done)))
            if bad.size:
                self.add("source_index", samples_text(bad),
                         f"not increasing input positions below {self.inputs_done}")
        self.read("paths", n, "sample")
        self._stats(np.concatenate(blocks) if blocks else None)
        self.check_complete()
        self.note_unchecked()

    def _fixed(self, name: str, n: int) -> None:
        shards = None if is_url(self.path) else ShardReader.open(Path(self.path) / name)
        if shards is None or not shards.checksums:
            self.read(name, n, "sample")
            return
        buf = np.empty((shards.shard_rows, *shards.sample_shape), shards.dtype)

        def reader(rows: np.ndarray) -> None:
            shards.read(rows, list(buf[: len(rows)]), n)

        self.read(name, n, "sample", reader)

    def _stats(self, blocks: np.ndarray | None) -> None:
        channels = len(self.attrs.get("channel_names", []))
        values = {k: self.read(f"stats/{k}", channels, "channel")
                  for k in ("count", "mean", "m2", "std")}
        for k, v in values.items():
            if v is not None and not np.isfinite(v).all():
                self.add(f"stats/{k}", "", "not finite")
        count = values["count"]
        if count is not None and blocks is not None and np.isfinite(blocks).all() and (
                count.shape != blocks.shape or not np.array_equal(count, blocks)):
            self.add("stats/count", "", f"counts {count.tolist()[:3]}… blocks, the samples hold "
                     f"{blocks.tolist()[:3]}… (statistics counted twice or lost?)")
        record = self.attrs.get("stats")
        if isinstance(record, dict):
            for k in ("count", "mean", "m2"):
                v = values[k]
                if v is not None and k in record and not np.array_equal(
                        v, np.asarray(record[k], np.float64)):
                    self.add(f"stats/{k}", "", "differs from the commit record")


class _Masks(_Checker):
    """Mask stores (standalone or the ``masks`` group of an image store with
    ``image_samples`` samples)."""

    def __init__(self, report: VerifyReport, g: zarr.Group, attrs: dict[str, Any],
                 prefix: str, image_samples: int | None = None) -> None:
        super().__init__(report, g, attrs, prefix)
        self.image_samples = image_samples
        if attrs.get("format") != MASK_FORMAT:
            self.add("", "", "not a freqdata mask group")

    def run(self) -> None:
        m, i = self.n, self.inputs_done
        inst = {name: self.read(name, m, "instance") for name in INSTANCE_ARRAYS
                if name in self.g or not name.startswith("patch/")}
        images = {name: self.read(f"images/{name}", i, "image") for name in IMAGE_ARRAYS}
        ids, sizes = images["ids"], images["sizes"]
        if ids is not None and i and (np.diff(ids) <= 0).any():
            self.add("images/ids", "", "image ids not increasing")
        if sizes is not None and (sizes < 1).any():
            self.add("images/sizes", samples_text(np.flatnonzero((sizes < 1).any(1)), "image"),
                     "non-positive image size")
        iid, idx = inst.get("image_ids"), inst.get("image_index")
        if iid is not None and m and (np.diff(iid) < 0).any():
            self.add("image_ids", "", "instances not sorted by image id")
        if iid is not None and ids is not None and m:
            row = np.searchsorted(ids, iid)
            bad = np.flatnonzero((row >= len(ids)) | (ids[np.minimum(row, len(ids) - 1)] != iid))
            if bad.size:
                self.add("image_ids", samples_text(bad, "instance"), "image not in images/ids")
            elif idx is not None and images["image_index"] is not None and not np.array_equal(
                    idx, images["image_index"][row]):
                self.add("image_index", "", "differs from images/image_index")
        if self.image_samples is not None and images["image_index"] is not None:
            ii = images["image_index"]
            if ((ii < -1) | (ii >= self.image_samples)).any():
                self.add("images/image_index", "", f"not -1 or a sample < {self.image_samples}")
        for name in ("vectors", "patch/vectors", "boxes", "areas"):
            v = inst.get(name)
            if v is not None and not np.isfinite(v).all():
                self.add(name, samples_text(np.flatnonzero(
                    ~np.isfinite(v.reshape(len(v), -1)).all(1)), "instance"), "not finite")
        labels = inst.get("patch/labels")
        if labels is not None and (labels > 2).any():
            self.add("patch/labels", "", "PatchDCT labels outside 0/1/2")
        nus = list(self.attrs.get("config", {}).get("weak", []))
        for nu in [None, *nus] if nus else []:
            group = "weak/full" if nu is None else f"weak/nu{nu}"
            shapes = self.check_ragged(group, i, "image", None)
            if shapes is None or sizes is None:
                continue
            limit = sizes if nu is None else np.minimum(sizes, 2 * int(nu) + 1)  # grid_size
            bad = np.flatnonzero((shapes != limit).any(axis=1))
            if bad.size:
                self.add(f"{group}/shape", samples_text(bad, "image"),
                         "label map shape does not match the image size")
        self.check_complete()
        self.note_unchecked()
