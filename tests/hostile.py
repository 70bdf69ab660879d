"""Hostile inputs made from real JPEGs: empty, not an image, truncated, absurd dimensions."""

from __future__ import annotations

from pathlib import Path


def patch_dimensions(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its SOF frame header claiming ``width`` x ``height``."""
    i = 2
    while i + 4 <= len(jpeg):
        if jpeg[i] != 0xFF:
            raise ValueError("not at a marker")
        marker = jpeg[i + 1]
        length = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC9, 0xCA):
            out = bytearray(jpeg)
            out[i + 5 : i + 7] = height.to_bytes(2, "big")
            out[i + 7 : i + 9] = width.to_bytes(2, "big")
            return bytes(out)
        i += 2 + length
    raise ValueError("no SOF marker")


def write_hostile(folder: Path, real_jpeg: Path) -> dict[str, str]:
    """Write the hostile files into ``folder``; returns {file name: expected reason fragment}."""
    folder.mkdir(parents=True, exist_ok=True)
    data = real_jpeg.read_bytes()
    files = {
        "empty.jpg": (b"", "empty"),
        "text.jpg": (b"this is not an image\n", "not a JPEG"),
        "truncated.jpg": (data[: len(data) // 2], "truncated"),
        "huge.jpg": (patch_dimensions(data, 65000, 65000), "max_pixels"),
    }
    for name, (content, _) in files.items():
        (folder / name).write_bytes(content)
    return {name: reason for name, (_, reason) in files.items()}


def encode_or_crash(path: str, opts: object) -> object:
    """Stand-in for the encoder in worker processes: kills its process on ``*crash*`` inputs."""
    import os

    from freqdata.job import _encode_one

    if "crash" in os.path.basename(path):
        os._exit(11)  # what a segfault in a decoder looks like to the pool
    return _encode_one(path, opts)
