"""Hostile inputs made from real JPEGs: empty, not an image, truncated, absurd dimensions,
damaged scans (issue 12: each must be refused by both encoding paths), and orientation
metadata in the forms the two paths once read differently."""

from __future__ import annotations

import struct
from pathlib import Path

SOI, EOI, SOS, DHT = b"\xff\xd8", b"\xff\xd9", 0xDA, 0xC4


def segments(jpeg: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """``([(marker, payload), ...], scan_start)``: the marker segments from SOI up to and
    including the first SOS header, and the offset of the first entropy-coded byte."""
    if jpeg[:2] != SOI:
        raise ValueError("not a JPEG")
    out, i = [], 2
    while True:
        if jpeg[i] != 0xFF:
            raise ValueError("not at a marker")
        marker = jpeg[i + 1]
        length = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        out.append((marker, jpeg[i + 4 : i + 2 + length]))
        i += 2 + length
        if marker == SOS:
            return out, i


def assemble(segs: list[tuple[int, bytes]], scan: bytes) -> bytes:
    """SOI, the segments, the entropy-coded ``scan`` bytes (EOI included if wanted)."""
    body = b"".join(
        bytes([0xFF, m]) + (len(p) + 2).to_bytes(2, "big") + p for m, p in segs
    )
    return SOI + body + scan


def scan_then_eoi(jpeg: bytes) -> bytes:
    """A scan header followed directly by EOI: no entropy-coded data at all."""
    segs, _ = segments(jpeg)
    return assemble(segs, EOI)


def empty_huffman_tables(jpeg: bytes) -> bytes:
    """Every Huffman table emptied (16 zero code counts, no symbols); scan data unchanged."""
    segs, start = segments(jpeg)
    out = []
    for m, p in segs:
        if m == DHT:
            q, i = bytearray(), 0
            while i < len(p):
                n = sum(p[i + 1 : i + 17])
                q += bytes([p[i]]) + bytes(16)
                i += 17 + n
            p = bytes(q)
        out.append((m, p))
    return assemble(out, jpeg[start:])


def renumber_restarts(jpeg: bytes) -> bytes:
    """Every RSTn marker of the scan replaced by RST(n+1 mod 8): wrong restart numbering.
    ``jpeg`` must use restart intervals (raises ``ValueError`` otherwise)."""
    segs, start = segments(jpeg)
    scan = bytearray(jpeg[start:])
    found = 0
    for i in range(len(scan) - 1):
        if scan[i] == 0xFF and 0xD0 <= scan[i + 1] <= 0xD7:
            scan[i + 1] = 0xD0 + (scan[i + 1] - 0xD0 + 1) % 8
            found += 1
    if not found:
        raise ValueError("no restart markers in this JPEG")
    return assemble(segs, bytes(scan))


def truncate_mid_scan(jpeg: bytes, *, eoi: bool) -> bytes:
    """The entropy-coded data cut in the middle (then EOI when ``eoi``)."""
    _, start = segments(jpeg)
    cut = start + (len(jpeg) - start) // 2
    return jpeg[:cut] + (EOI if eoi else b"")


def tiny_bomb(jpeg: bytes, width: int = 13377, height: int = 13377, scan_bytes: int = 64) -> bytes:
    """A few hundred bytes declaring ``width x height``: the tables, SOF and SOS of ``jpeg``
    (metadata segments dropped), ``scan_bytes`` of its entropy data, EOI."""
    segs, start = segments(jpeg)
    keep = [(m, p) for m, p in segs if not 0xE0 <= m <= 0xEF and m != 0xFE]
    small = assemble(keep, jpeg[start : start + scan_bytes] + EOI)
    return patch_dimensions(small, width, height)


def exif_orientation_segment(value: int, type_code: int = 3, big_endian: bool = False) -> bytes:
    """An APP1 Exif segment whose IFD0 holds only the orientation tag, stored with TIFF type
    ``type_code`` (3 SHORT, 8 SSHORT, 4 LONG, 9 SLONG, 1 BYTE, 6 SBYTE)."""
    e = ">" if big_endian else "<"
    fmt = {1: "B", 6: "b", 3: "H", 8: "h", 4: "I", 9: "i"}[type_code]
    inline = struct.pack(e + fmt, value).ljust(4, b"\x00")
    tiff = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(e + "I", 8)
    tiff += struct.pack(e + "H", 1) + struct.pack(e + "HHI", 0x0112, type_code, 1) + inline
    tiff += struct.pack(e + "I", 0)
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def xmp_orientation_segment(value: int, *, element: bool = False) -> bytes:
    """An APP1 XMP segment with ``tiff:Orientation`` as an attribute (or an element)."""
    if element:
        desc = (
            '<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/">'
            f"<tiff:Orientation>{value}</tiff:Orientation></rdf:Description>"
        )
    else:
        desc = (
            '<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
            f'tiff:Orientation="{value}"/>'
        )
    xml = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f"{desc}</rdf:RDF></x:xmpmeta>"
    ).encode()
    payload = b"http://ns.adobe.com/xap/1.0/\x00" + xml
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def with_segments(jpeg: bytes, *extra: bytes) -> bytes:
    """``jpeg`` with its APP1 segments removed and ``extra`` segments inserted after SOI."""
    segs, start = segments(jpeg)
    body = assemble([(m, p) for m, p in segs if m != 0xE1], jpeg[start:])
    return SOI + b"".join(extra) + body[2:]


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

    from freqdata.job import encode_one

    if "crash" in os.path.basename(path):
        os._exit(11)  # what a segfault in a decoder looks like to the pool
    return encode_one(path, opts)
