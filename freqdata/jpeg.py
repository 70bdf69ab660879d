"""Read a JPEG's DCT coefficients without decoding pixels (the "no inverse DCT" path).

Conventions (docs/conventions.md):

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
from dataclasses import dataclass

import numpy as np

from freqdata import _jpegcoef
from freqdata.errors import InputError, UsageError
from freqdata.limits import DEFAULT_MAX_PIXELS
from freqdata.orientation import EXIF_HEADER, XMP_HEADER, orientation

__all__ = [
    "DamagedJpegWarning",
    "JpegCoefficients",
    "JpegError",
    "JpegHeader",
    "JpegTooLargeError",
    "UnsupportedJpegError",
    "check_header",
    "read_coefficients",
    "read_header",
]


class JpegError(InputError):
    """The input is not a readable JPEG: not a JPEG at all, damaged, truncated or too large."""


class JpegTooLargeError(JpegError):
    """The header declares more than ``max_pixels`` pixels; nothing was decoded."""


class DamagedJpegWarning(UserWarning):
    """A damaged or truncated JPEG decoded anyway (``strict=False`` / ``lenient=True``): the
    message names the input and libjpeg's warnings. Missing data reads as zero coefficients
    (flat grey blocks)."""


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
        orientation: 1..8 from the EXIF / XMP metadata (:mod:`freqdata.orientation`: EXIF
            IFD0 over XMP ``tiff:Orientation``; 1 when absent or invalid); the planes are
            *not* rotated.
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


_SOF_MARKERS = frozenset(
    (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
)
_ARITHMETIC_SOF = frozenset((0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_LOSSLESS_SOF = frozenset((0xC3, 0xC7, 0xCB, 0xCF))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class JpegHeader:
    """What a JPEG's headers declare, read without decoding anything.

    ``width``, ``height``: pixels as stored (height 0 when the frame defers it to a DNL
    marker); ``sampling``: per component ``(h, v)``; ``marker``: the SOF marker byte
    (0xC0 baseline, 0xC2 progressive ...); ``exif``, ``xmp``: payloads of the first APP1
    Exif and the first APP1 XMP segment (without their identifiers), ``None`` where absent.
    """

    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]
    marker: int
    exif: bytes | None = None
    xmp: bytes | None = None

    @property
    def orientation(self) -> int:
        """1..8 from the EXIF / XMP metadata (:func:`freqdata.orientation.orientation`)."""
        return orientation(self.exif, self.xmp)

    @property
    def arithmetic(self) -> bool:
        return self.marker in _ARITHMETIC_SOF

    @property
    def lossless(self) -> bool:
        return self.marker in _LOSSLESS_SOF

    def min_scan_bytes(self) -> int:
        """A lower bound on the entropy-coded bytes of a complete Huffman-coded image.

        Every 8x8 block of a component costs at least one bit in that component's first DC
        scan (sequential: a DC code and an EOB code, two bits; progressive: one DC code),
        so a file holding fewer than ``blocks / 8`` bytes for the smallest component cannot
        hold the image: it is truncated or forged. 0 for arithmetic coding (which can code
        a block in less than a bit), lossless JPEG and a deferred (DNL) height.
        """
        if self.arithmetic or self.lossless or not self.height or not self.sampling:
            return 0
        hmax = max(h for h, _ in self.sampling)
        vmax = max(v for _, v in self.sampling)
        blocks = min(
            _ceil_div(_ceil_div(self.width * h, hmax), 8)
            * _ceil_div(_ceil_div(self.height * v, vmax), 8)
            for h, v in self.sampling
        )
        return blocks // 8


def read_header(data: bytes | bytearray | memoryview) -> JpegHeader | None:
    """The headers of a JPEG, by a marker walk from SOI to the first scan (nothing decoded),
    or ``None`` when no well-formed frame header (SOF) comes before it."""
    mv = memoryview(data).cast("B")
    n = mv.nbytes
    if n < 4 or mv[0] != 0xFF or mv[1] != 0xD8:
        return None
    frame: tuple[int, int, tuple[tuple[int, int], ...], int] | None = None
    exif = xmp = None
    i = 2
    while i + 4 <= n:
        if mv[i] != 0xFF:
            break
        marker = mv[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            i += 2
            continue
        if marker in (0xDA, 0xD9):  # the first scan (or the end): headers are over
            break
        length = (mv[i + 2] << 8) | mv[i + 3]
        if length < 2 or i + 2 + length > n:
            break
        seg = mv[i + 4 : i + 2 + length]
        if marker in _SOF_MARKERS and frame is None:
            if len(seg) < 6 or len(seg) < 6 + 3 * seg[5]:
                return None
            sampling = tuple((seg[7 + 3 * c] >> 4, seg[7 + 3 * c] & 15) for c in range(seg[5]))
            if any(h < 1 or v < 1 for h, v in sampling):
                return None
            frame = ((seg[3] << 8) | seg[4], (seg[1] << 8) | seg[2], sampling, marker)
        elif marker == 0xE1:
            if exif is None and seg[: len(EXIF_HEADER)] == EXIF_HEADER:
                exif = seg[len(EXIF_HEADER) :].tobytes()
            elif xmp is None and seg[: len(XMP_HEADER)] == XMP_HEADER:
                xmp = seg[len(XMP_HEADER) :].tobytes()
        i += 2 + length
    return None if frame is None else JpegHeader(*frame, exif=exif, xmp=xmp)


def check_header(data: bytes | bytearray | memoryview, max_pixels: int) -> JpegHeader | None:
    """Refuse, from the header alone and before anything image-sized is allocated, a JPEG
    whose ``width * height`` exceeds ``max_pixels`` (:class:`JpegTooLargeError`) or whose
    entropy-coded data cannot hold the image it declares (:class:`JpegError`, see
    :meth:`JpegHeader.min_scan_bytes`). Returns the header (``None`` when there is none to
    check: the decoder then reports what is wrong)."""
    header = read_header(data)
    if header is None:
        return None
    npix = header.width * header.height
    if npix > max_pixels:
        size = (
            f"{npix / 1e9:.1f} Gpixels" if npix >= 10**9
            else f"{npix / 1e6:.1f} Mpixels" if npix >= 10**6
            else f"{npix} pixels"
        )
        raise JpegTooLargeError(
            f"image of {header.width}x{header.height} = {size} exceeds max_pixels={max_pixels}; "
            "refused from the header, before decoding"
        )
    need, have = header.min_scan_bytes(), memoryview(data).nbytes
    if have < need:
        raise JpegError(
            f"truncated or forged JPEG: it declares {header.width}x{header.height} but has "
            f"{have} bytes, fewer than the {need} its Huffman-coded scans need (one bit per "
            "8x8 block at least); refused before decoding"
        )
    return header


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
        raise UsageError(f"max_pixels must be >= 0, got {max_pixels}")
    max_pixels = min(max_pixels, 2**64 - 1)
    mv = memoryview(data).cast("B")
    if mv.nbytes < 2 or mv[:2].tobytes() != b"\xff\xd8":
        raise JpegError(where + _not_jpeg_message(mv[:12].tobytes()))
    try:
        header = check_header(mv, max_pixels)
    except JpegError as e:
        raise type(e)(where + str(e)) from None
    try:
        res = _jpegcoef.read(mv, max_pixels, bool(strict))
    except _jpegcoef.Failure as e:
        kind, msg = e.args
        cls = {"unsupported": UnsupportedJpegError, "too_large": JpegTooLargeError}.get(
            kind, JpegError
        )
        raise cls(where + msg) from None
    width, height, planes, qtables, sampling, colorspace, progressive, arithmetic, _, warns = (
        res[:10]
    )
    return JpegCoefficients(
        width=width,
        height=height,
        planes=tuple(planes),
        quant_tables=tuple(qtables),
        sampling=tuple(sampling),
        colorspace=colorspace,
        orientation=1 if header is None else header.orientation,
        progressive=progressive,
        arithmetic=arithmetic,
        warnings=tuple(warns),
    )
