"""Read a JPEG's DCT coefficients without decoding pixels (the "no inverse DCT" path).

Conventions (DESIGN.md §2):

* coefficients are **dequantized** (quantized value x quantization step, saturated to int16),
  which is the orthonormal 2-D DCT-II of the level-shifted samples ``x - 128``: DC is
  ``8 * mean(block - 128)``;
* inside a block, natural row-major order ``k = 8*v + u`` (v = vertical frequency = row,
  u = horizontal frequency = column), libjpeg's in-memory order; zigzag is never used for
  storage;
* each component keeps its own block grid: for 4:2:0, Cb/Cr have about half as many block
  rows and columns as Y. The grid is the component's ``height_in_blocks x width_in_blocks``
  (``ceil(ceil(H * v_c / v_max) / 8)`` x ``ceil(ceil(W * h_c / h_max) / 8)``), not libjpeg's
  MCU-padded allocation.

The work is done by the C extension ``freqdata._jpegcoef`` with the GIL released: libjpeg-turbo
parses the headers; the entropy data is decoded by the extension's own Huffman decoder when it
is a clean single-scan sequential stream (the common case; exactly libjpeg's result, about 13%
faster) and by libjpeg otherwise; one pass dequantizes into the output.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from freqdata import _jpegcoef
from freqdata.errors import InputError
from freqdata.limits import DEFAULT_MAX_PIXELS

__all__ = [
    "JpegCoefficients",
    "JpegError",
    "UnsupportedJpegError",
    "read_coefficients",
]


class JpegError(InputError):
    """The input is not a readable JPEG: not a JPEG at all, damaged, truncated or too large."""


class UnsupportedJpegError(JpegError):
    """A valid JPEG that the coefficient path cannot represent.

    CMYK/YCCK (4 components), RGB or other non-YCbCr colour spaces, precision other than 8 bits
    (12-bit), lossless/hierarchical JPEG, or chroma sampling factors that do not divide luma's
    with a ratio of 1, 2 or 4. Such files may still be decodable to pixels (the pixel path).
    """


@dataclass(frozen=True, eq=False)
class JpegCoefficients:
    """A JPEG's dequantized DCT coefficients, one plane per component.

    Attributes:
        width, height: image size in pixels as stored in the file (before EXIF orientation).
        planes: per component, a C-contiguous, writable ``(Hb_c, Wb_c, 64)`` int16 array of
            dequantized coefficients in natural order ``k = 8*v + u``; ``Hb_c x Wb_c`` is the
            component's block grid (e.g. 227x149 at 4:2:0: Y ``(19, 29, 64)``, Cb/Cr
            ``(10, 15, 64)``). The planes of one image share one allocation.
        quant_tables: per component, the ``(64,)`` uint16 quantization table used for it,
            natural order.
        sampling: per component ``(h, v)`` sampling factors, e.g. ``((2, 2), (1, 1), (1, 1))``
            for 4:2:0; ``((1, 1),)`` for grayscale (a single component has no subsampling).
        colorspace: ``"gray"`` (1 component) or ``"ycbcr"`` (3 components: Y, Cb, Cr).
        orientation: EXIF Orientation 1..8 from APP1 (1 when absent or invalid); the planes
            are *not* rotated.
        progressive: progressive (SOF2/SOF10) rather than sequential.
        arithmetic: arithmetic rather than Huffman entropy coding.
        warnings: libjpeg's warnings (the first 8). With ``strict=False`` a damaged or
            truncated file is returned as far as it could be decoded and the warnings say
            why; with ``strict=True`` only harmless metadata warnings can appear here.
    """

    width: int
    height: int
    planes: tuple[np.ndarray, ...]
    quant_tables: tuple[np.ndarray, ...]
    sampling: tuple[tuple[int, int], ...]
    colorspace: str
    orientation: int
    progressive: bool
    arithmetic: bool
    warnings: tuple[str, ...] = ()

    @property
    def block_shapes(self) -> tuple[tuple[int, int], ...]:
        """Per component ``(Hb_c, Wb_c)``."""
        return tuple((p.shape[0], p.shape[1]) for p in self.planes)


_MAGIC = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (b"%PDF", "a PDF document"),
    (b"<", "text/HTML/XML"),
)


def _not_jpeg_message(data: bytes) -> str:
    head = bytes(data[:8])
    if not head:
        return "not a JPEG file (empty input: 0 bytes)"
    what = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if what is None and head[:4] == b"RIFF" and bytes(data[8:12]) == b"WEBP":
        what = "a WebP image"
    if what is None and bytes(data[4:12]) in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        what = "a HEIF/AVIF image"
    if what is None:
        return f"not a JPEG file (starts with {head!r})"
    return f"not a JPEG file: looks like {what} (starts with {head!r})"


def _exif_orientation(tiff: bytes | None) -> int:
    """EXIF Orientation (tag 0x0112 of IFD0) from an APP1 payload after ``Exif\\0\\0``; 1 if
    absent or invalid. Never raises on junk."""
    try:
        return _parse_orientation(tiff)
    except (struct.error, IndexError):  # pragma: no cover - the parser bounds-checks already
        return 1


def _parse_orientation(tiff: bytes | None) -> int:
    if not tiff or len(tiff) < 8:
        return 1
    if tiff[:4] == b"II*\x00":
        e = "<"
    elif tiff[:4] == b"MM\x00*":
        e = ">"
    else:
        return 1
    (ifd,) = struct.unpack_from(e + "I", tiff, 4)
    if ifd < 8 or ifd + 2 > len(tiff):
        return 1
    (n,) = struct.unpack_from(e + "H", tiff, ifd)
    n = min(n, (len(tiff) - ifd - 2) // 12)
    for i in range(n):
        tag, typ, count = struct.unpack_from(e + "HHI", tiff, ifd + 2 + 12 * i)
        if tag != 0x0112:
            continue
        if count < 1:
            return 1
        off = ifd + 2 + 12 * i + 8
        if typ == 3:  # SHORT
            (value,) = struct.unpack_from(e + "H", tiff, off)
        elif typ in (4, 9):  # LONG / SLONG
            (value,) = struct.unpack_from(e + "I", tiff, off)
        elif typ == 1:  # BYTE
            value = tiff[off]
        else:
            return 1
        return value if 1 <= value <= 8 else 1
    return 1


def read_coefficients(
    src: str | os.PathLike | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    strict: bool = True,
) -> JpegCoefficients:
    """Read a JPEG's dequantized 8x8 DCT coefficients (no inverse DCT, no colour conversion).

    Args:
        src: a file path, or the JPEG's bytes (any contiguous bytes-like object).
        max_pixels: refuse images with more than this many pixels (``width * height``),
            checked from the header before the coefficient arrays are allocated.
        strict: if true (default), any libjpeg corrupt-data warning ("Premature end of JPEG
            file", "Corrupt JPEG data: ...") is an error; if false, the data is returned as
            far as libjpeg could decode it (missing blocks are zero) and the warnings are in
            ``result.warnings``. Harmless metadata warnings (unknown JFIF revision or Adobe
            transform code) never fail.

    Returns:
        JpegCoefficients: per-component ``(Hb_c, Wb_c, 64)`` int16 planes (dequantized,
        saturated to int16, natural order ``k = 8*v + u``), ``(64,)`` uint16 quantization
        tables, sampling factors, colour space, EXIF orientation and coding flags.
        For a baseline/progressive 8-bit JPEG, ``planes[c] / quant_tables[c]`` are the
        quantized values exactly (unless saturated).

    Raises:
        JpegError: not a JPEG, damaged, truncated, or larger than ``max_pixels``; the message
            names the file (for a path) and the reason.
        UnsupportedJpegError: a valid JPEG the coefficient path cannot represent (CMYK/YCCK,
            RGB or other non-YCbCr colour spaces, 12-bit, lossless, unusual sampling).
        OSError: the path cannot be read.
    """
    if isinstance(src, str | os.PathLike):
        name = os.fspath(src)
        with open(name, "rb") as f:
            data = f.read()
        where = f"{name!r}: "
    else:
        data = src
        where = ""
    max_pixels = int(max_pixels)
    if max_pixels < 0:
        raise ValueError(f"max_pixels must be >= 0, got {max_pixels}")
    max_pixels = min(max_pixels, 2**64 - 1)
    mv = memoryview(data).cast("B")
    if mv.nbytes < 2 or mv[:2].tobytes() != b"\xff\xd8":
        raise JpegError(where + _not_jpeg_message(mv[:12].tobytes()))
    try:
        res = _jpegcoef.read(mv, max_pixels, bool(strict))
    except _jpegcoef.Failure as e:
        kind, msg = e.args
        cls = UnsupportedJpegError if kind == "unsupported" else JpegError
        raise cls(where + msg) from None
    width, height, planes, qtables, sampling, colorspace, progressive, arithmetic, exif, warns = (
        res[:10]
    )
    return JpegCoefficients(
        width=width,
        height=height,
        planes=tuple(planes),
        quant_tables=tuple(qtables),
        sampling=tuple(sampling),
        colorspace=colorspace,
        orientation=_exif_orientation(exif),
        progressive=progressive,
        arithmetic=arithmetic,
        warnings=tuple(warns),
    )
