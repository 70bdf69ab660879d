"""The store writer: one lock, one commit protocol, resume after a crash anywhere.

Protocol (docs/store.md, "Commit protocol"):

1. **data** — a batch's rows are appended to every array (array shapes grow first, then
   their chunks/shards are written);
2. **commit record** — ONE write of the root ``zarr.json`` whose ``freqdata`` attribute
   holds the progress (``inputs_done``, ``samples``, ``complete``), the statistics
   (``stats``: per-channel ``count``, ``mean``, ``m2`` as JSON floats, exact for float64)
   and the error log. It makes the rows, the statistics and the errors visible together.
   Local stores: zarr's ``LocalStore`` writes every key to a temporary file and renames it
   over the old one, so a killed process leaves the old or the new record, never a mix
   (fsspec URLs: whatever the file system's single-object write guarantees);
3. **derived statistics** — ``stats/{count,mean,m2,std}`` are rewritten from the record for
   readers that use plain zarr. They are never read back by the writer.

:meth:`StoreWriter.resume` reads the record, removes zarr's leftover temporary files and
every row past the committed count (:mod:`freqdata.store.fields`, safe to interrupt and
repeat), and rewrites the derived statistics: after a kill at any point, resume and finish
give the same bytes as an uninterrupted run. A writer holds the store's lock
(:mod:`freqdata.store.lock`) from before it touches anything until :meth:`StoreWriter.finish`
or :meth:`StoreWriter.close` (a ``with`` block closes it).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from freqdata.errors import StoreError, UsageError
from freqdata.stats import ChannelStats
from freqdata.store.fields import Column, Ragged
from freqdata.store.layout import (
    RAGGED_CHUNK,
    SHARD_SAMPLES,
    array_options,
    exists,
    storage_rows,
    writable,
)
from freqdata.store.lock import LOCK_NAME, StoreLock, acquire, local_path
from freqdata.store.spec import Progress, StoreSpec

KILL_ENV = "FREQDATA_TEST_KILL_AT"
STATS = ("count", "mean", "m2", "std")  # the derived statistics arrays, stats/<name>


class StoreExistsError(UsageError, FileExistsError):
    """The output exists and neither resume nor overwrite was asked for."""


def remove_temporaries(path: str | Path) -> None:
    """Delete the temporary files a killed zarr write leaves in a local store
    (``<name>.<32 hex>.partial``: zarr's ``LocalStore`` writes through them)."""
    root = local_path(path)
    if root is None:
        return
    for p in root.rglob("*.partial"):
        stem, _, tag = p.name[: -len(".partial")].rpartition(".")
        if stem and len(tag) == 32 and all(c in "0123456789abcdef" for c in tag):
            p.unlink(missing_ok=True)


def clear_directory(root: Path) -> None:
    """Delete everything in ``root`` except its lock file (an overwrite holding the lock)."""
    for p in root.iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def prepare_new(path: str | Path, overwrite: bool, attrs: dict[str, Any]) -> zarr.Group:
    """A new root group at ``path`` whose first ``zarr.json`` already holds ``attrs`` (the
    initial commit record), for a writer holding the store's lock. An existing store is
    replaced only with ``overwrite``; a non-empty folder that is not a Zarr store never."""
    record = {"freqdata": attrs}
    root = local_path(path)
    if root is None:  # fsspec URL: zarr replaces it (no lock)
        return zarr.open_group(str(path), mode="w", zarr_format=3, attributes=record)
    entries = [p for p in root.iterdir() if p.name != LOCK_NAME]
    if entries:
        if not overwrite:  # created by someone else between our check and our lock
            raise StoreExistsError(f"{path} exists: resume it or overwrite it")
        if not (root / "zarr.json").exists():
            raise StoreExistsError(
                f"{path} is a non-empty folder that is not a Zarr store: refusing to overwrite it"
            )
        clear_directory(root)
    return zarr.open_group(str(root), mode="a", zarr_format=3, attributes=record)


def _is_empty(path: str | Path) -> bool:
    """A local store folder holding nothing but (at most) its lock: a create killed early."""
    root = local_path(path)
    return root is not None and all(p.name == LOCK_NAME for p in root.iterdir())


_reached: Counter[str] = Counter()


def fault_point(stage: str) -> None:
    """Test hook: with ``FREQDATA_TEST_KILL_AT=<stage>:<n>`` this process SIGKILLs itself the
    ``n``-th time it reaches ``stage`` (``data``: rows written, record not;
    ``record``: record written, derived statistics not; ``arrays``: a new store's first
    record written, its arrays not)."""
    want = os.environ.get(KILL_ENV)
    if not want:
        return
    _reached[stage] += 1
    name, _, count = want.partition(":")
    if name == stage and str(_reached[stage]) == count:
        os.kill(os.getpid(), signal.SIGKILL)


def sample_fields(spec: StoreSpec) -> list[Column | Ragged]:
    """The per-sample fields of a store of ``spec``: one per part (a sharded :class:`Column`
    ``(N, C, Hb, Wb)`` for a fixed grid, a :class:`Ragged` ``(C, Hb, Wb)`` per sample
    otherwise), then ``labels``, ``source_index`` (int64, -1 = none) and ``paths``."""
    fields: list[Column | Ragged] = [
        Column(p.name, spec.dtype, (p.channels, *p.grid), rows=1, shard=SHARD_SAMPLES,
               dims=("sample", *spec.axes))
        if p.grid is not None
        else Ragged(p.name, spec.dtype, 3, RAGGED_CHUNK)
        for p in spec.parts
    ]
    return [
        *fields,
        Column("labels", np.int64, fill=-1),
        Column("source_index", np.int64, fill=-1),
        Column("paths", str, fill=None),
    ]


def commit_record(
    spec: StoreSpec,
    progress: Progress,
    stats: ChannelStats,
    errors: list[dict[str, Any]],
    warnings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``freqdata`` attribute of a commit: the spec's attributes, ``progress``,
    ``stats`` (per-channel ``count``, ``mean``, ``m2``: JSON floats, exact for float64)
    and ``errors``; ``warnings`` (inputs stored despite damage, ``lenient``) only when
    there are any."""
    attrs = spec.attrs()
    attrs["progress"] = vars(progress).copy()
    attrs["stats"] = {"count": stats.n.tolist(), "mean": stats.mean.tolist(),
                      "m2": stats.m2.tolist()}
    attrs["errors"] = errors
    if warnings:
        attrs["warnings"] = warnings
    return attrs


class StoreWriter:
    """Appends encoded samples to an image store and commits them; see the module docstring.

    Encoders use :meth:`write_batch` (append + commit), or write rows themselves
    (:attr:`group`, :meth:`rows_per_object`) and then :meth:`add_stats`,
    :meth:`add_errors` and :meth:`commit`. :attr:`progress` is what has been committed;
    :attr:`stats` and :attr:`errors` include what will be at the next commit.
    :attr:`took_over`: the record of a stale lock this writer replaced, else None.
    """

    def __init__(
        self,
        group: zarr.Group,
        spec: StoreSpec,
        progress: Progress,
        stats: ChannelStats,
        errors: list[dict[str, Any]],
        lock: StoreLock | None,
        warnings: list[dict[str, Any]] | None = None,
    ) -> None:
        self.group = group
        self.spec = spec
        self.progress = progress
        self.stats = stats
        self.errors = errors
        self.warnings = warnings if warnings is not None else []
        self._lock = lock
        self.took_over = lock.took_over if lock else None

    # -- creation and resume -------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, spec: StoreSpec, *, overwrite: bool = False) -> StoreWriter:
        """A new, empty store at ``path``. An existing one is replaced only with
        ``overwrite`` (after taking its lock). Raises :class:`StoreExistsError`, or
        :class:`~freqdata.store.lock.StoreBusyError` if another process writes ``path``."""
        if exists(path) and not overwrite:
            raise StoreExistsError(
                f"{path} exists: pass resume=True to continue it or overwrite=True"
            )
        lock = acquire(path)
        try:
            return cls._new(path, spec, overwrite, lock)
        except BaseException:
            if lock:
                lock.release()
            raise

    @classmethod
    def _new(
        cls, path: str | Path, spec: StoreSpec, overwrite: bool, lock: StoreLock | None
    ) -> StoreWriter:
        """Create the store under ``lock``: root group with the empty record, then arrays,
        then the record again (a kill in between is resumed as a new store)."""
        stats = ChannelStats.empty(spec.channels)
        g = prepare_new(path, overwrite, commit_record(spec, Progress(), stats, []))
        fault_point("arrays")
        cls._create_arrays(g, spec)
        w = cls(g, spec, Progress(), stats, [], lock)
        w.commit(0, 0)
        return w

    @staticmethod
    def _create_arrays(g: zarr.Group, spec: StoreSpec) -> None:
        for f in sample_fields(spec):
            f.create(g)
        sg = g.create_group("stats")
        for name in STATS:
            sg.create_array(
                name, shape=(spec.channels,), dtype=np.float64, fill_value=0.0,
                **array_options(8),
            )

    @classmethod
    def resume(cls, path: str | Path, spec: StoreSpec) -> StoreWriter:
        """Reopen a store for appending, after taking its lock and checking it was made by
        the same ``spec``. Rows written past the last commit record are removed; a store
        whose creation was interrupted (nothing committed) is created again."""
        lock = acquire(path)
        try:
            if _is_empty(path):
                return cls._new(path, spec, True, lock)
            try:
                g = zarr.open_group(str(local_path(path) or path), mode="r+", zarr_format=3)
                attrs = g.attrs.get("freqdata")
            except (FileNotFoundError, zarr.errors.NodeNotFoundError):
                attrs = None
            if not attrs or attrs.get("format") != spec.format:
                raise StoreError(f"{path} is not a store of format {spec.format!r}")
            theirs = {k: attrs.get(k) for k in spec.attrs()}
            if theirs != spec.attrs():
                diff = [k for k, v in spec.attrs().items() if theirs.get(k) != v]
                raise StoreError(
                    f"cannot resume {path}: it was written with different {', '.join(diff)}"
                )
            progress = Progress(**attrs["progress"])
            if progress.inputs_done == 0 and not cls._has_arrays(g, spec):
                return cls._new(path, spec, True, lock)  # killed while creating them
            rec = attrs["stats"]
            stats = ChannelStats(*(np.array(rec[k], np.float64) for k in ("count", "mean", "m2")))
            w = cls(g, spec, progress, stats, list(attrs["errors"]), lock,
                    list(attrs.get("warnings", [])))
            remove_temporaries(path)
            w._truncate_to(progress.samples)
            w._write_derived_stats()
        except BaseException:
            if lock:
                lock.release()
            raise
        return w

    @staticmethod
    def _has_arrays(g: zarr.Group, spec: StoreSpec) -> bool:
        """Whether every array of ``spec``'s layout exists in ``g``."""
        names = [f"stats/{k}" for k in STATS]
        for f in sample_fields(spec):
            names += [f.name] if isinstance(f, Column) else [
                f"{f.name}/{k}" for k in ("data", "shape", "offset")]
        return all(name in g for name in names)

    def _truncate_to(self, n: int) -> None:
        for f in sample_fields(self.spec):
            f.truncate(self.group, n)

    # -- the lock --------------------------------------------------------------------------
    def close(self) -> None:
        """Release the lock (idempotent). What was not committed stays uncommitted."""
        if self._lock:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    def rows_per_object(self, name: str) -> int:
        """Positions along axis 0 per stored object of the array ``name`` (a path in the
        group, e.g. ``cubes`` or ``cubes/data``): the unit two writers must not share."""
        return storage_rows(self.group[name])

    def ragged_end(self, part: str, rows: int) -> int:
        """Elements of ragged ``part``'s flat data used by its first ``rows`` samples."""
        return Ragged(part, self.spec.dtype, 3, RAGGED_CHUNK).end(self.group, rows)

    def add_stats(self, stats: ChannelStats) -> None:
        """Merge the statistics of new samples (in sample order) into the next commit."""
        self.stats = self.stats.merge(stats)

    def add_errors(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append error-log entries ``{index, path, reason}`` to the next commit."""
        self.errors.extend(entries)

    def add_warnings(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append warning-log entries ``{index, path, reason}`` (an input stored despite
        damage, ``lenient``) to the next commit."""
        self.warnings.extend(entries)

    def write_batch(self, items: list[tuple[int, str, int, Any]], inputs_done: int) -> None:
        """Append a batch and commit it.

        ``items``: ``(input_index, path, label, result)`` in input order, where ``result`` is
        a tuple of part arrays (one per :class:`Part`, each ``(C_p, Hb, Wb)``) or a ``str``
        (the reason the input failed). ``inputs_done``: inputs consumed after this batch.
        """
        ok = [(i, p, lab, r) for i, p, lab, r in items if not isinstance(r, str)]
        n = self.progress.samples
        fields = sample_fields(self.spec)
        if ok:
            for k, f in enumerate(fields[: len(self.spec.parts)]):
                arrays = [r[k] for *_, r in ok]
                f.append(self.group, np.stack(arrays) if isinstance(f, Column) else arrays)
            labels, index, paths = fields[len(self.spec.parts) :]
            labels.append(self.group, np.array([lab for _, _, lab, _ in ok], dtype=np.int64))
            index.append(self.group, np.array([i for i, *_ in ok], dtype=np.int64))
            paths.append(self.group, np.array([p for _, p, _, _ in ok], dtype=str))
        for _, _, _, r in ok:
            self.add_stats(ChannelStats.join([ChannelStats.of(a) for a in r]))
        self.add_errors(
            {"index": i, "path": p, "reason": r} for i, p, _, r in items if isinstance(r, str)
        )
        self.commit(inputs_done, n + len(ok))

    def commit(self, inputs_done: int, samples: int) -> None:
        """Make rows ``[0, samples)`` (already written), the statistics and the error log
        visible together, with ``inputs_done`` inputs consumed: one record write."""
        fault_point("data")
        self.progress = Progress(inputs_done, samples, self.progress.complete)
        self.group.attrs["freqdata"] = commit_record(
            self.spec, self.progress, self.stats, self.errors, self.warnings
        )
        fault_point("record")
        self._write_derived_stats()

    def _write_derived_stats(self) -> None:
        sg = self.group["stats"]
        for name, value in (
            ("count", self.stats.n),
            ("mean", self.stats.mean),
            ("m2", self.stats.m2),
            ("std", self.stats.std),
        ):
            writable(sg[name])[:] = value

    def finish(self) -> None:
        """Mark the store complete and release the lock."""
        self.progress.complete = True
        self.commit(self.progress.inputs_done, self.progress.samples)
        self.close()
