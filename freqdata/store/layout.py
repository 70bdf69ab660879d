"""Where stores live and how their bytes are laid out: paths/URLs, chunking, the one codec.

Every freqdata store (images, RGB, masks) compresses with :func:`compressor` and chunks with
the constants below; they were chosen by measurement (docs/store.md,
benchmarks/store_layout.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zarr.codecs import BloscCodec, BloscShuffle

# One sample per inner chunk for random access, shards of SHARD_SAMPLES samples to keep the
# file count low, Blosc/zstd level 1 with byte shuffle (2.1x smaller on int16 cubes, as fast
# to read as lz4).
SHARD_SAMPLES = 64
RAGGED_CHUNK = 1 << 18  # elements per chunk of a ragged part's flat data (512 KiB of int16)
INDEX_CHUNK = 1 << 16


def compressor(typesize: int = 2) -> BloscCodec:
    """The codec of every freqdata array: Blosc zstd level 1, byte shuffle at ``typesize``."""
    return BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.shuffle, typesize=typesize)


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
