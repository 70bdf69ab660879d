"""Zarr v3 image stores: what is written, how it is resumed, and how it is read back.

One Zarr v3 group, readable with plain ``zarr`` (docs/store.md has the full layout):

* fixed geometry → ``cubes`` ``(N, C, Hb, Wb)`` int16;
* geometry ``none`` → ragged parts: a group per part (``cubes``, or ``luma`` + ``chroma`` for
  native chroma) holding ``data`` (flat int16), ``shape`` ``(N, 3)`` int32 and ``offset``
  ``(N,)`` int64, so sample ``i`` is ``data[offset[i]:offset[i] + prod(shape[i])]``;
* ``labels`` ``(N,)`` int64 (-1 = none), ``source_index`` ``(N,)`` int64 (position in the
  input list), ``paths`` ``(N,)`` strings;
* ``stats/{count,mean,m2,std}`` ``(C,)`` float64: per-channel statistics over all blocks;
* attributes ``freqdata``: format, configuration, channel and class names, and the commit
  record: progress, statistics and the error log (one entry per failed input: index, path,
  reason).


The package: :mod:`~freqdata.store.layout` (paths, chunking, the codec),
:mod:`~freqdata.store.spec` (layout and progress records), :mod:`~freqdata.store.fields`
(field kinds: how columns and ragged values are created, appended, truncated),
:mod:`~freqdata.store.writer` (commit, resume), :mod:`~freqdata.store.lock` (one writer per
store), :mod:`~freqdata.store.rgb` (the RGB store kind), :mod:`~freqdata.store.reader` (read
back).
"""

from freqdata.store.layout import exists, is_url, store_bytes
from freqdata.store.lock import StoreBusyError
from freqdata.store.reader import ImageStore, StoreGroup, open_store
from freqdata.store.spec import FORMAT, FORMAT_VERSION, Part, Progress, StoreSpec
from freqdata.store.writer import StoreExistsError, StoreWriter

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ImageStore",
    "Part",
    "Progress",
    "StoreBusyError",
    "StoreExistsError",
    "StoreGroup",
    "StoreSpec",
    "StoreWriter",
    "exists",
    "is_url",
    "open_store",
    "store_bytes",
]
