"""Image orientation from EXIF and XMP metadata: the one reader both encoding paths use.

The rule (docs/conventions.md, "Orientation"):

* **EXIF**: tag 0x0112 of IFD0 of the first APP1 ``Exif\\0\\0`` segment (for a JPEG, found by
  :func:`freqdata.jpeg.read_header`; the ``exif`` metadata of other formats, or a TIFF
  file's own IFD0), in either byte order,
  stored with any integer type (BYTE, SHORT, LONG and the signed SBYTE, SSHORT, SLONG). Only
  IFD0 counts: the thumbnail's IFD1 and the Exif sub-IFD never do.
* **XMP**: ``tiff:Orientation`` of the first APP1 XMP packet
  (``http://ns.adobe.com/xap/1.0/\\0``), as an attribute (``tiff:Orientation="6"``) or an
  element (``<tiff:Orientation>6</tiff:Orientation>``).
* **Precedence**: EXIF over XMP. When IFD0 holds the tag, its value decides, and a value
  outside 1..8 (or of a non-integer type) means "no rotation"; XMP is read only when IFD0
  has no such tag. This is what Pillow does (``Image.getexif`` fills the tag from XMP only
  when EXIF lacks it, and ``ImageOps.exif_transpose`` ignores unknown values) and what
  exiftool reports (its XMP-tiff table has priority 0, "not as reliable as actual TIFF
  tags", so the EXIF Orientation is the one it returns).
* Values: 1..8 as defined by EXIF (1 = upright, 6 = rotate 90 degrees clockwise to display,
  ...); anything unreadable gives 1. Never raises on junk metadata: damaged metadata must
  not cost decodable pixels.
"""

from __future__ import annotations

import re
import struct

__all__ = [
    "EXIF_HEADER",
    "EXIF_ORIENTATION_TAG",
    "XMP_HEADER",
    "exif_orientation",
    "orientation",
    "xmp_orientation",
]

EXIF_ORIENTATION_TAG = 0x0112

EXIF_HEADER = b"Exif\x00\x00"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
# TIFF field types that hold integers → struct format (BYTE, SHORT, LONG, SBYTE, SSHORT, SLONG)
_INTEGER_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i"}
_XMP_ORIENTATION = re.compile(rb"tiff:Orientation\s*(?:=\s*[\"']\s*|>\s*)([0-9]+)")


def _valid(value: int) -> int:
    return value if 1 <= value <= 8 else 1


def exif_orientation(tiff: bytes | bytearray | memoryview | None) -> int | None:
    """The orientation tag of IFD0 of a TIFF structure, or ``None`` when IFD0 has no such tag.

    ``tiff``: the bytes starting at the TIFF header (``II*\\0`` or ``MM\\0*``), i.e. an APP1
    payload after ``Exif\\0\\0`` (a leading ``Exif\\0\\0`` is skipped too). Returns 1..8;
    1 when the tag is present with a value outside 1..8 or a non-integer type (it still
    overrides XMP). ``None`` also for missing or unparsable data.
    """
    if tiff is None:
        return None
    data = bytes(tiff)
    if data.startswith(EXIF_HEADER):
        data = data[len(EXIF_HEADER) :]
    return _ifd0_orientation(data)


def _ifd0_orientation(data: bytes) -> int | None:
    if len(data) < 8:
        return None
    if data[:4] == b"II*\x00":
        e = "<"
    elif data[:4] == b"MM\x00*":
        e = ">"
    else:
        return None
    (ifd,) = struct.unpack_from(e + "I", data, 4)
    if ifd < 8 or ifd + 2 > len(data):
        return None
    (n,) = struct.unpack_from(e + "H", data, ifd)
    n = min(n, (len(data) - ifd - 2) // 12)
    for i in range(n):
        entry = ifd + 2 + 12 * i
        tag, typ, count = struct.unpack_from(e + "HHI", data, entry)
        if tag != EXIF_ORIENTATION_TAG:
            continue
        fmt = _INTEGER_TYPES.get(typ)
        if fmt is None or count < 1:
            return 1  # present but unusable: no rotation (and XMP is not consulted)
        (value,) = struct.unpack_from(e + fmt, data, entry + 8)  # first value, inline
        return _valid(value)
    return None


def xmp_orientation(xmp: bytes | bytearray | memoryview | str | None) -> int | None:
    """``tiff:Orientation`` of an XMP packet (attribute or element form), or ``None``.

    Returns 1..8 (1 for a value outside that range).
    """
    if xmp is None:
        return None
    data = xmp.encode("utf-8", "replace") if isinstance(xmp, str) else bytes(xmp)
    m = _XMP_ORIENTATION.search(data)
    return None if m is None else _valid(int(m.group(1)))


def orientation(
    exif: bytes | bytearray | memoryview | None = None,
    xmp: bytes | bytearray | memoryview | str | None = None,
) -> int:
    """The image's orientation 1..8 from its EXIF (TIFF structure) and XMP packet: EXIF's
    IFD0 tag when present, else XMP's ``tiff:Orientation``, else 1 (module docstring)."""
    try:
        found = exif_orientation(exif)
        if found is None:
            found = xmp_orientation(xmp)
    except (struct.error, ValueError, OverflowError):  # junk metadata: upright
        return 1
    return 1 if found is None else found
