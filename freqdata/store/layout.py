"""Where stores live and how their bytes are laid out: paths/URLs, chunking, the one codec.

Every freqdata store (images, RGB, masks) creates its arrays with :func:`array_options`
(Blosc compression then a crc32c checksum per chunk, every chunk stored) and chunks with the
constants below; they were chosen by measurement (docs/store.md,
benchmarks/store_layout.py). :func:`absent_objects` finds the stored objects (chunks or
shards) that rows which must exist are missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zarr
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec

# One sample per inner chunk for random access, shards of SHARD_SAMPLES samples to keep the
# file count low, Blosc/zstd level 1 with byte shuffle (2.1x smaller on int16 cubes, as fast
# to read as lz4).
SHARD_SAMPLES = 64
RAGGED_CHUNK = 1 << 18  # elements per chunk of a ragged part's flat data (512 KiB of int16)
INDEX_CHUNK = 1 << 16


# Writing every chunk, also one equal to the fill value (zarr skips those by default), is what
# lets a reader tell a deleted chunk from a chunk of fill values (docs/store.md, "Integrity").
EVERY_CHUNK = {"write_empty_chunks": True}


def compressors(typesize: int = 2) -> tuple[BloscCodec, Crc32cCodec]:
    """The bytes codecs of every freqdata array: Blosc zstd level 1 with byte shuffle at
    ``typesize`` (bytes per element; 1 for strings), then a crc32c checksum of the
    compressed chunk (for a sharded array: of each inner chunk; the shard index carries its
    own crc32c)."""
    blosc = BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.shuffle, typesize=typesize)
    return blosc, Crc32cCodec()


def array_options(typesize: int = 2) -> dict[str, Any]:
    """Keyword arguments of ``create_array`` for every freqdata array: :func:`compressors`
    and :data:`EVERY_CHUNK`."""
    return {"compressors": compressors(typesize), "config": EVERY_CHUNK}


def writable(arr: zarr.Array) -> zarr.Array:
    """``arr`` set to store every chunk it writes (:data:`EVERY_CHUNK`): zarr's runtime
    configuration is not saved with the array, so an array reopened for writing needs it."""
    return arr.with_config(EVERY_CHUNK)


def has_checksums(arr: zarr.Array) -> bool:
    """Whether ``arr`` was written by a freqdata store of format 2 or later: its chunks carry a
    crc32c and every chunk is stored (format 1 arrays have neither, docs/store.md)."""
    codecs = arr.metadata.to_dict().get("codecs", [])
    if codecs and codecs[0].get("name") == "sharding_indexed":
        codecs = codecs[0]["configuration"]["codecs"]
    return any(c.get("name") == "crc32c" for c in codecs)


def storage_rows(arr: zarr.Array) -> int:
    """Rows along axis 0 per stored object (shard if sharded, else chunk)."""
    return (arr.shards or arr.chunks)[0]


def object_key(arr: zarr.Array, k: int) -> str:
    """Store key of stored object ``k`` along axis 0 (arrays are chunked whole along the
    other axes; default chunk key encoding)."""
    tail = "/".join("0" * (arr.ndim - 1))
    return f"{arr.path}/c/{k}" + (f"/{tail}" if tail else "")


def absent_objects(arr: zarr.Array, start: int, stop: int) -> list[int]:
    """Stored objects (chunks, or shards when sharded) holding rows ``[start, stop)`` of
    ``arr`` that are absent from its store: their indices ``k`` along axis 0."""
    if stop <= start:
        return []
    rows = storage_rows(arr)
    wanted = range(start // rows, (stop - 1) // rows + 1)
    store = arr.store_path.store
    root = getattr(store, "root", None)
    if isinstance(root, Path):  # a local store: one stat per object
        return [k for k in wanted if not (root / object_key(arr, k)).is_file()]
    from zarr.core.sync import sync

    return [k for k in wanted if not sync(store.exists(object_key(arr, k)))]


def is_url(path: str | Path) -> bool:
    """True for an fsspec URL (``memory://``, ``s3://``, ``file://``…), false for a path."""
    return "://" in str(path)


def exists(path: str | Path) -> bool:
    """Whether a store (or anything) exists at ``path``, a local path or an fsspec URL."""
    if not is_url(path):
        return Path(path).exists()
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(path))
    return bool(fs.exists(root))


def store_bytes(path: str | Path) -> int:
    """Bytes on disk of a store: every file under ``path`` (a local path or fsspec URL)."""
    if is_url(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(str(path))
        return int(fs.du(root, total=True))
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def delete_key(store: Any, key: str) -> None:
    """Delete ``key`` from a zarr store (local stores have a sync API, fsspec ones not)."""
    if hasattr(store, "delete_sync"):
        store.delete_sync(key)
    else:
        from zarr.core.sync import sync

        sync(store.delete(key))
