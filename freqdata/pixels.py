"""The pixel path: decode → EXIF orientation → geometry → JFIF YCbCr planes.

:func:`load_ycbcr` turns one image (a path or its bytes) into full-resolution JFIF
full-range BT.601 YCbCr planes ``(3, H, W)`` uint8 with H and W multiples of 8, ready for
:func:`freqdata.dct.block_dct` (docs/conventions.md). The geometry is a :class:`Geometry`
(``parse_geometry("none" | "resnet" | "mobilenet" | "S:C")``):

* ``none``: the whole image, no resampling; the right and bottom edges are padded up to
  whole 8x8 blocks by replicating the last column/row (what libjpeg's encoder does to
  partial blocks);
* ``resnet`` / ``mobilenet`` / ``S:C`` without an ``rng`` (evaluation): shorter side resized
  to ``S`` with PIL's antialiased bilinear filter, then the centre ``C x C`` crop. The named
  geometries follow DCTNet's rule (``Geometry.rule == "dctnet"``, kaix90/DCTNet
  ``cvfunctional.resize`` / ``center_crop``, which torchvision's ``Resize`` / ``CenterCrop``
  share): the other side is ``int(S * other / shorter)`` (truncated) and the offsets are
  ``int(round((dim - C) * 0.5))`` (Python 3 ``round``, half to even). ``S:C`` keeps
  freqdata's own rule (``"round"``): the other side ``round(S * other / shorter)`` and the
  offsets ``floor((dim - C) / 2)``;
* ``S:C`` with an ``rng`` (training): torchvision's ``RandomResizedCrop(C)`` on the oriented
  source (scale (0.08, 1), log-uniform ratio (3/4, 4/3), 10 attempts, then the centred
  fallback; bilinear), then a horizontal flip with probability 0.5. ``S`` is not used.
  With an ``rng`` and no crop (``none``, or resize-only geometries) only the flip is random
  (the flip comes before the block padding, so padding stays on the right and bottom).
  The generator is consumed in torchvision's order: crop parameters, then ``rng.random()``
  for the flip.

Decoding is as cheap as it can be while staying faithful: a JPEG coded in YCbCr is decoded
by libjpeg straight to YCbCr (no colour conversion; libjpeg's own chroma upsampling), and
when the region to resample is at least twice the output size libjpeg scales by 1/2, 1/4 or
1/8 in the DCT domain (``Image.draft``), by the largest factor that keeps the region at
least as large as the output (for ``S:C``: the reduced shorter side stays >= S), so the
final bilinear step only reduces or keeps, never magnifies, a reduced decode. Orientation
(:mod:`freqdata.orientation`: EXIF IFD0 tag 0x0112 of any integer type, else XMP
``tiff:Orientation``; values 2..8 rotate, anything else is upright; the same reader as the
coefficient path) is a pixel transpose of the decoded YCbCr samples. The geometry is one
PIL bilinear resample with a source ``box``, so only the output pixels are computed. This
equals "resize the whole image, then crop" except that Pillow passes the box as float32,
which moves about 2% of samples by 1; and for the random crop the filter may read the
pixels just outside the crop (torchvision crops first, so its filter is clipped at the
crop border).

Other sources (PNG, GIF, BMP ..., CMYK/YCCK JPEGs and JPEGs coded in RGB) are converted to
RGB (alpha dropped, palettes expanded), resampled in RGB, and converted to YCbCr with
libjpeg's own fixed-point JFIF equations (``jccolor.c``), which are within 0.501 of the
float formula (mean 0.25, unbiased, over all 2**24 colours)::

    Y  =       0.299    R + 0.587    G + 0.114    B
    Cb = 128 - 0.168736 R - 0.331264 G + 0.5      B
    Cr = 128 + 0.5      R - 0.418688 G - 0.081312 B

PIL's own ``convert("YCbCr")`` is not used: it truncates instead of rounding (mean error
0.47, biased by -0.47). Grayscale sources give ``Y = L`` and ``Cb = Cr = 128``.

Untrusted input: only the Pillow formats in :data:`FORMATS` are opened; the pixel count
from the header is checked against ``max_pixels`` before anything is decoded; empty,
garbage, truncated and damaged data raise :class:`ImageDecodeError` (an
:class:`~freqdata.errors.InputError`) naming the source and the reason.

Strict by default, as the coefficient path: a JPEG is first checked by the coefficient
reader (:func:`freqdata.read_coefficients` with ``strict=True``: the header limits of
:func:`freqdata.jpeg.check_header`, then every scan entropy-decoded), because Pillow
silently fills what libjpeg reports as corrupt ("Corrupt JPEG data: ...", "premature end
of data segment", bad restart markers, undefined or empty Huffman tables) with grey.
Any such report is an :class:`ImageDecodeError`. JPEGs the coefficient reader cannot
represent (CMYK/YCCK, RGB-coded, 12-bit) get Pillow's own checks only. Truncation of the
other formats is caught by Pillow as long as ``ImageFile.LOAD_TRUNCATED_IMAGES`` is
``False`` (its default; this module never changes it, and the strict path refuses to run
when it is ``True``). ``lenient=True`` decodes damaged JPEGs as Pillow does and emits a
:class:`freqdata.jpeg.DamagedJpegWarning` naming the input and the damage instead. A path
that cannot be opened raises the usual ``OSError`` (``FileNotFoundError`` ...), not
``ImageDecodeError``.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image, ImageFile

from freqdata.dct import BLOCK
from freqdata.errors import InputError, UsageError
from freqdata.jpeg import (
    DamagedJpegWarning,
    JpegError,
    JpegTooLargeError,
    UnsupportedJpegError,
    read_coefficients,
)
from freqdata.limits import DEFAULT_MAX_PIXELS
from freqdata.orientation import orientation

__all__ = [
    "FORMATS",
    "GEOMETRIES",
    "RULES",
    "Geometry",
    "ImageDecodeError",
    "ImageTooLargeError",
    "YCbCrImage",
    "centre_offset",
    "load_rgb",
    "load_ycbcr",
    "parse_geometry",
    "random_resized_crop_params",
    "resized_size",
    "rgb_to_ycbcr",
    "rrc_fallback_box",
]

FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
"""Pillow formats :func:`load_ycbcr` opens (``JPEG`` includes MPO, whose first frame is
used); others (EPS, which runs Ghostscript, PDF, PSD ...) are refused as untrusted-input
risks."""


# --------------------------------------------------------------------------- geometry


RULES = ("round", "dctnet")
"""Rounding rules of a resize + centre crop (:func:`resized_size`, :func:`centre_offset`)."""


@dataclass(frozen=True)
class Geometry:
    """What the pixel path does to the oriented source before the colour planes are taken.

    ``resize``: the shorter side is resized to this many pixels (``None``: no resize).
    ``crop``: side of the square crop, a positive multiple of 8 (``None``: whole image,
    padded to whole 8x8 blocks). A crop needs a resize (``resize >= crop``).
    ``name``: the spec it was parsed from (``"resnet"``, ``"256:224"`` ...).
    ``rule``: how the resized size and the centre offset are rounded, one of :data:`RULES`
    (:func:`resized_size`, :func:`centre_offset`).
    """

    resize: int | None
    crop: int | None
    name: str
    rule: str = "round"

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise UsageError(
                f"geometry {self.name!r}: rule must be one of {RULES}, got {self.rule!r}"
            )
        if self.resize is not None and (not isinstance(self.resize, int) or self.resize <= 0):
            raise UsageError(
                f"geometry {self.name!r}: resize must be a positive int, got {self.resize!r}"
            )
        if self.crop is not None:
            if not isinstance(self.crop, int) or self.crop <= 0 or self.crop % BLOCK:
                raise UsageError(
                    f"geometry {self.name!r}: crop must be a positive multiple of {BLOCK}, "
                    f"got {self.crop!r}"
                )
            if self.resize is None or self.resize < self.crop:
                raise UsageError(
                    f"geometry {self.name!r}: crop {self.crop} needs a resize >= crop, "
                    f"got {self.resize!r}"
                )

    @property
    def blocks(self) -> tuple[int, int] | None:
        """``(Hb, Wb)`` block grid of a crop geometry; ``None`` when it depends on the image."""
        return None if self.crop is None else (self.crop // BLOCK, self.crop // BLOCK)


GEOMETRIES: dict[str, Geometry] = {
    "none": Geometry(None, None, "none"),
    "resnet": Geometry(512, 448, "resnet", "dctnet"),  # 56 x 56 blocks (Xu et al., ResNet-50)
    "mobilenet": Geometry(1024, 896, "mobilenet", "dctnet"),  # 112 x 112 blocks (MobileNetV2)
}

_CUSTOM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_CHOICES = (
    "none, resnet (512 -> 448), mobilenet (1024 -> 896) or S:C (shorter side resized to S, "
    f"centre/random crop C x C; C a positive multiple of {BLOCK}, S >= C, e.g. 256:224)"
)


def parse_geometry(spec: str | Geometry) -> Geometry:
    """The :class:`Geometry` for ``spec``: ``none``, ``resnet``, ``mobilenet`` or ``"S:C"``.

    A :class:`Geometry` is returned unchanged. Anything else raises :class:`UsageError` listing
    the valid choices.
    """
    if isinstance(spec, Geometry):
        return spec
    if not isinstance(spec, str):
        raise UsageError(f"geometry must be a string, got {type(spec).__name__}: choose {_CHOICES}")
    key = spec.strip().lower()
    if key in GEOMETRIES:
        return GEOMETRIES[key]
    m = _CUSTOM.match(key)
    if m:
        s, c = int(m.group(1)), int(m.group(2))
        if c > 0 and c % BLOCK == 0 and s >= c:
            return Geometry(s, c, f"{s}:{c}")
    raise UsageError(f"unknown geometry {spec!r}: choose {_CHOICES}")


# --------------------------------------------------------------------------- result, errors


@dataclass(frozen=True)
class YCbCrImage:
    """Colour planes of one image after orientation and geometry.

    ``planes``: ``(3, H, W)`` uint8, C-contiguous, JFIF full-range BT.601 (Y, Cb, Cr) at full
    resolution (chroma upsampled by libjpeg for subsampled JPEGs); H and W multiples of 8.
    ``sampling``: the source JPEG's per-component ``(h, v)`` sampling factors, e.g.
    ``((2, 2), (1, 1), (1, 1))`` for 4:2:0, swapped to ``(v, h)`` when the EXIF orientation
    transposes the image (so they describe the upright planes); ``((1, 1),) * 3`` when the
    planes were computed from RGB (non-JPEG, CMYK/YCCK or RGB-coded JPEG); ``((1, 1),)``
    for a grayscale source.
    ``source_size``: ``(width, height)`` of the full decoded source after EXIF orientation.
    ``flipped``: whether the random horizontal flip was applied.
    """

    planes: np.ndarray
    sampling: tuple[tuple[int, int], ...]
    source_size: tuple[int, int]
    flipped: bool


class ImageDecodeError(InputError):
    """An input that is not a decodable image: empty, garbage, truncated, damaged, unsupported.

    ``source`` names the input (its path, or ``<N bytes>``), ``reason`` says what is wrong.
    Picklable, so it crosses process pools.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(source, reason)
        self.source = source
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class ImageTooLargeError(ImageDecodeError):
    """The header announces more pixels than ``max_pixels`` allows; nothing was decoded."""


# --------------------------------------------------------------------------- colour

_SCALEBITS = 16
_ONE_HALF = 1 << (_SCALEBITS - 1)
_CBCR_OFFSET = 128 << _SCALEBITS


def _fix(x: float) -> int:
    return int(x * (1 << _SCALEBITS) + 0.5)


# libjpeg jccolor.c rgb_ycc_convert, row per output component: (R, G, B, constant)
_RGB_YCC = (
    (_fix(0.29900), _fix(0.58700), _fix(0.11400), _ONE_HALF),
    (-_fix(0.16874), -_fix(0.33126), _fix(0.50000), _CBCR_OFFSET + _ONE_HALF - 1),
    (_fix(0.50000), -_fix(0.41869), -_fix(0.08131), _CBCR_OFFSET + _ONE_HALF - 1),
)


def rgb_to_ycbcr(rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """JFIF YCbCr of ``(H, W, 3)`` uint8 RGB → ``(3, H, W)`` uint8, exactly as libjpeg encodes.

    libjpeg's 16-bit fixed-point equations (no clipping needed: results stay in 0..255);
    within 0.501 of the float64 JFIF formula over all 2**24 colours (mean 0.25, unbiased).
    ``out`` may be a ``(3, H, W)`` uint8 view to write into.
    """
    if out is None:
        out = np.empty((3, *rgb.shape[:2]), dtype=np.uint8)
    r, g, b = (rgb[..., k].astype(np.int32) for k in range(3))
    for k, (cr, cg, cb, c0) in enumerate(_RGB_YCC):
        acc = r * cr
        acc += g * cg
        acc += b * cb
        acc += c0
        acc >>= _SCALEBITS
        out[k] = acc
    return out


# --------------------------------------------------------------------------- geometry planning

# EXIF orientation → the transpose that displays the image upright (as ImageOps.exif_transpose)
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_RRC_SCALE = (0.08, 1.0)
_RRC_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))

Box = tuple[float, float, float, float]
T = TypeVar("T")


def resized_size(width: int, height: int, shorter: int, rule: str = "round") -> tuple[int, int]:
    """``(w, h)`` after resizing the shorter side of ``width x height`` to ``shorter``.

    ``rule="round"``: the other side is ``round(shorter * other / short_side)`` (Python's
    ``round``, half to even). ``rule="dctnet"``: ``int(shorter * other / short_side)``
    (truncated), as DCTNet's ``cvfunctional.resize`` and torchvision's ``Resize``. A square
    image gives ``(shorter, shorter)``.
    """
    cut = int if rule == "dctnet" else round
    if width < height:
        return shorter, cut(shorter * height / width)
    return cut(shorter * width / height), shorter


def centre_offset(dim: int, crop: int, rule: str = "round") -> int:
    """Offset of the centre ``crop`` in a side of ``dim`` pixels (``dim >= crop``).

    ``rule="round"``: ``(dim - crop) // 2``. ``rule="dctnet"``: ``int(round((dim - crop) *
    0.5))`` (Python 3 ``round``, half to even), as DCTNet's ``cvfunctional.center_crop`` and
    torchvision's ``CenterCrop``: the two differ when ``dim - crop`` is 3 modulo 4.
    """
    return round((dim - crop) * 0.5) if rule == "dctnet" else (dim - crop) // 2


def random_resized_crop_params(
    width: int, height: int, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params`` with numpy: ``(top, left, h, w)`` in pixels.

    scale (0.08, 1.0), log-uniform aspect ratio in (3/4, 4/3), 10 attempts, then the centred
    crop clamped to the ratio range.
    """
    area = width * height
    for _ in range(10):
        target_area = area * rng.uniform(*_RRC_SCALE)
        aspect = math.exp(rng.uniform(*_RRC_LOG_RATIO))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    return rrc_fallback_box(width, height)


def rrc_fallback_box(
    width: int, height: int, ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop``'s box when no try fits: ``(top, left, h, w)``, the
    centred whole image clamped to the aspect-ratio range ``ratio`` (shared by
    :func:`random_resized_crop_params` and :func:`freqdata.augment.resized_crop_params`)."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _plan(
    geom: Geometry, width: int, height: int, rng: np.random.Generator | None
) -> tuple[Box, tuple[int, int], bool]:
    """Source box (oriented pixel coordinates), output size and flip for one image."""
    if geom.crop is not None and rng is not None:
        top, left, h, w = random_resized_crop_params(width, height, rng)
        box: Box = (left, top, left + w, top + h)
        out = (geom.crop, geom.crop)
    elif geom.resize is not None:
        tw, th = resized_size(width, height, geom.resize, geom.rule)
        sx, sy = width / tw, height / th
        if geom.crop is not None:
            c = geom.crop
            x0, y0 = centre_offset(tw, c, geom.rule), centre_offset(th, c, geom.rule)
            box = (x0 * sx, y0 * sy, (x0 + c) * sx, (y0 + c) * sy)
            out = (c, c)
        else:
            box, out = (0, 0, width, height), (tw, th)
    else:
        box, out = (0, 0, width, height), (width, height)
    flip = bool(rng.random() < 0.5) if rng is not None else False
    return box, out, flip


def _draft_factor(box: Box, out: tuple[int, int]) -> int:
    """Largest libjpeg DCT scaling 1/a (a in 8, 4, 2, 1) keeping the box >= the output size."""
    ratio = min((box[2] - box[0]) / out[0], (box[3] - box[1]) / out[1])
    for a in (8, 4, 2):
        if ratio >= a:
            return a
    return 1


# --------------------------------------------------------------------------- decoding


def _orientation(im: Image.Image) -> int:
    """1..8 by :func:`freqdata.orientation.orientation` (EXIF IFD0 over XMP) from Pillow's
    copies of the metadata: a JPEG's first APP1 Exif segment and its XMP packet (the ones
    :func:`freqdata.jpeg.read_header` gives the coefficient path), a PNG's eXIf chunk, a
    WebP's EXIF chunk, a TIFF's own IFD0."""
    exif = im.info.get("exif")
    if exif is None and im.format == "TIFF":
        try:
            exif = im.getexif().tobytes()
        except Exception:  # damaged metadata must not reject decodable pixels
            exif = None
    return orientation(exif, im.info.get("xmp") or im.info.get("XML:com.adobe.xmp"))


def _is_ycc_jpeg(im: Image.Image) -> bool:
    """True for a 3-component JPEG coded in YCbCr (libjpeg's own colour-space guess)."""
    if im.mode != "RGB" or len(getattr(im, "layer", ())) != 3:
        return False
    if "jfif" in im.info:
        return True
    transform = im.info.get("adobe_transform")
    if transform is not None:
        return transform != 0  # Adobe APP14: 0 = RGB, 1 = YCbCr
    ids = tuple(layer[0] for layer in im.layer)
    return ids != (ord("R"), ord("G"), ord("B"))


def _working_mode(im: Image.Image) -> Image.Image:
    """The decoded image in one of YCbCr, L or RGB (the modes geometry and planes handle)."""
    mode = im.mode
    if mode in ("YCbCr", "L", "RGB"):
        return im
    if mode.startswith("I;16"):
        arr = np.asarray(im.convert("I;16") if mode != "I;16" else im)
        return Image.fromarray((arr >> 8).astype(np.uint8), "L")
    if mode in ("1", "LA", "La", "I", "F"):
        return im.convert("L")
    return im.convert("RGB")  # CMYK, P, PA, RGBA, RGBa, RGBX, LAB, HSV ...


def _to_planes(im: Image.Image, flip: bool) -> np.ndarray:
    """``(3, H8, W8)`` uint8 planes of a YCbCr/L/RGB image, flipped, edge-padded to 8x8 blocks."""
    w, h = im.size
    hp, wp = -(-h // BLOCK) * BLOCK, -(-w // BLOCK) * BLOCK
    out = np.empty((3, hp, wp), dtype=np.uint8)
    step = -1 if flip else 1
    if im.mode == "YCbCr":  # per-band copies beat one strided (H, W, 3) -> (3, H, W) transpose
        for k, band in enumerate(im.split()):
            out[k, :h, :w] = np.asarray(band)[:, ::step]
    elif im.mode == "L":
        out[0, :h, :w] = np.asarray(im)[:, ::step]
        out[1:] = 128
    else:
        rgb_to_ycbcr(np.asarray(im)[:, ::step], out[:, :h, :w])
    if wp > w:
        out[:, :h, w:] = out[:, :h, w - 1 : w]
    if hp > h:
        out[:, h:, :] = out[:, h - 1 : h, :]
    return out


def _check_size(im: Image.Image, max_pixels: int, name: str) -> tuple[int, int]:
    """``(width, height)`` from the header, refused when empty or over ``max_pixels``."""
    width, height = im.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            name,
            f"image of {width}x{height} = {width * height} pixels exceeds "
            f"max_pixels={max_pixels}; refused before decoding",
        )
    if width <= 0 or height <= 0:
        raise ImageDecodeError(name, f"empty image ({width}x{height})")
    return width, height


def _load(
    im: Image.Image,
    geom: Geometry,
    rng: np.random.Generator | None,
    max_pixels: int,
    name: str,
) -> YCbCrImage:
    width, height = _check_size(im, max_pixels, name)
    is_jpeg = im.format in ("JPEG", "MPO")
    if not is_jpeg:
        im.load()  # some formats (PNG) only expose EXIF after the pixel data
    orientation = _orientation(im)
    swap = orientation >= 5
    ow, oh = (height, width) if swap else (width, height)
    box, out, flip = _plan(geom, ow, oh, rng)

    scale = 1.0
    gray = im.mode in ("L", "1", "LA", "La", "I", "F") or im.mode.startswith("I;16")
    sampling: tuple[tuple[int, int], ...] = ((1, 1),) if gray else ((1, 1),) * 3
    if is_jpeg:
        ycc = _is_ycc_jpeg(im)
        if ycc:
            sampling = tuple((int(h), int(v)) for _, h, v, _ in im.layer)
        a = _draft_factor(box, out)
        res = im.draft("YCbCr" if ycc else None, (width // a, height // a) if a > 1 else None)
        if res is not None:
            scale = width / res[1][2]
    if swap:  # a transposed image has its sampling factors swapped too
        sampling = tuple((v, h) for h, v in sampling)
    im.load()
    im = _working_mode(im)
    if orientation != 1:
        im = im.transpose(_ORIENT[orientation])
    if scale != 1.0:
        dw, dh = im.size
        box = (box[0] / scale, box[1] / scale, min(box[2] / scale, dw), min(box[3] / scale, dh))
    bw, bh = box[2] - box[0], box[3] - box[1]
    if (bw, bh) == out and all(float(v).is_integer() for v in box):
        if box != (0, 0, *im.size):
            im = im.crop(tuple(int(v) for v in box))
    else:
        im = im.resize(out, Image.Resampling.BILINEAR, box=box)
    return YCbCrImage(_to_planes(im, flip), sampling, (ow, oh), flip)


# what Pillow raises on hostile or damaged data (besides its own UnidentifiedImageError)
_PIL_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    struct.error,
    ZeroDivisionError,
)


def _unidentified_reason(fp: io.BufferedIOBase) -> str:
    """Why Pillow could not identify the data, from its first bytes."""
    try:
        fp.seek(0)
        head = fp.read(4)
    except OSError:
        head = b"?"
    if not head:
        return "empty input (0 bytes)"
    if head[:3] == b"\xff\xd8\xff":
        return (
            "a JPEG that Pillow cannot open (unsupported process such as 12-bit, lossless "
            "or hierarchical, or a damaged header)"
        )
    return f"not a recognised image format (accepted: {', '.join(FORMATS)})"


def load_ycbcr(
    src: str | os.PathLike[str] | bytes,
    geometry: Geometry | str = "none",
    *,
    rng: np.random.Generator | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    lenient: bool = False,
) -> YCbCrImage:
    """Decode ``src`` to JFIF YCbCr planes ``(3, H, W)`` uint8 after orientation and geometry.

    ``src``: a path or the encoded bytes. ``geometry``: a :class:`Geometry` or a spec for
    :func:`parse_geometry`. ``rng``: ``None`` for the deterministic (evaluation) geometry,
    a generator for random-resized-crop + flip (see the module docstring; with ``none`` only
    the flip is random). Output size: ``C x C`` for a crop geometry, else the (resized)
    oriented source rounded up to multiples of 8 by edge replication.

    Raises :class:`ImageTooLargeError` when the header's ``width * height`` exceeds
    ``max_pixels`` (checked before decoding) and :class:`ImageDecodeError` for empty,
    non-image, truncated or damaged data (both are :class:`~freqdata.errors.InputError`);
    ``lenient=True`` decodes a damaged JPEG anyway with a :class:`DamagedJpegWarning`
    (module docstring). :class:`~freqdata.errors.UsageError` for a bad geometry; ``OSError``
    when a path cannot be opened.
    """
    geom = parse_geometry(geometry)
    return _decode(
        src, lambda im, name: _load(im, geom, rng, max_pixels, name), max_pixels, lenient
    )


def load_rgb(
    src: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    lenient: bool = False,
) -> np.ndarray:
    """Decode ``src`` to upright RGB ``(H, W, 3)`` uint8: the whole image, EXIF orientation
    applied, no resampling.

    What ``cv2.imread(path, IMREAD_COLOR)`` gives (in RGB order) for JPEGs coded in YCbCr
    or grayscale: libjpeg's own colour conversion and "fancy" chroma upsampling, gray
    replicated to three channels. Other sources are Pillow's RGB conversion (alpha dropped,
    16-bit samples shifted down to 8 bits). Raises as :func:`load_ycbcr`.
    """
    return _decode(src, lambda im, name: _load_rgb(im, max_pixels, name), max_pixels, lenient)


def _load_rgb(im: Image.Image, max_pixels: int, name: str) -> np.ndarray:
    _check_size(im, max_pixels, name)
    if im.format not in ("JPEG", "MPO"):
        im.load()  # some formats (PNG) only expose EXIF after the pixel data
    orientation = _orientation(im)
    im.load()
    im = _working_mode(im).convert("RGB")
    if orientation != 1:
        im = im.transpose(_ORIENT[orientation])
    return np.asarray(im)


def _verify_jpeg(data: bytes, name: str, max_pixels: int, lenient: bool) -> None:
    """Refuse (or, ``lenient``, warn about) a JPEG that the coefficient reader finds too
    large, truncated or damaged; see the module docstring."""
    try:
        read_coefficients(data, max_pixels=max_pixels, strict=True)
    except JpegTooLargeError as e:
        raise ImageTooLargeError(name, str(e)) from None
    except UnsupportedJpegError:
        return  # not representable by the coefficient reader: Pillow's checks only
    except JpegError as e:
        if not lenient:
            raise ImageDecodeError(name, str(e)) from None
        warnings.warn(DamagedJpegWarning(f"{name}: decoded despite damage: {e}"), stacklevel=4)


def _decode(
    src: str | os.PathLike[str] | bytes,
    work: Callable[[Image.Image, str], T],
    max_pixels: int,
    lenient: bool,
) -> T:
    """``work(image, name)`` on the opened ``src`` after the strict JPEG check
    (:func:`_verify_jpeg`), Pillow's failures mapped to :class:`ImageDecodeError` /
    :class:`ImageTooLargeError`."""
    if not lenient and ImageFile.LOAD_TRUNCATED_IMAGES:
        raise UsageError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True, so Pillow would accept truncated "
            "images: set it back to False or decode with lenient=True (--lenient)"
        )
    if isinstance(src, (bytes, bytearray, memoryview)):
        name = f"<{len(src)} bytes>"
        data = bytes(src)
    else:
        name = os.fspath(src)
        with open(name, "rb") as f:  # open errors propagate as OSError
            data = f.read()
    fp: io.BufferedIOBase = io.BytesIO(data)
    try:
        with Image.open(fp, formats=FORMATS) as im:
            if im.format in ("JPEG", "MPO"):
                _verify_jpeg(data, name, max_pixels, lenient)
            return work(im, name)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(name, f"{e} (Pillow's Image.MAX_IMAGE_PIXELS guard)") from e
    except Image.UnidentifiedImageError as e:
        raise ImageDecodeError(name, _unidentified_reason(fp)) from e
    except _PIL_ERRORS as e:
        raise ImageDecodeError(name, f"cannot decode: {e}") from e
    finally:
        fp.close()
