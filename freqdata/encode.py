"""One image → one DCT cube, by either path.

* ``path="coeff"``: the JPEG's own dequantized coefficients (:func:`freqdata.read_coefficients`),
  no inverse DCT; chroma brought to the luma grid by exact DCT-domain box upsampling; EXIF
  orientation applied in the DCT domain. Whole image only (``geometry="none"``).
* ``path="pixels"``: decode → orientation → geometry → JFIF YCbCr
  (:func:`freqdata.pixels.load_ycbcr`) → 8x8 block DCT of the selected coefficients, rounded
  to the nearest integer.
* ``path="dctnet"``: DCTNet's own evaluation transform (:func:`freqdata.dctnet.encode_dctnet`:
  OpenCV's bilinear resize and centre crop, chroma through a 2x upscale and libjpeg's 4:2:0
  downsampling, libjpeg's integer DCT at quality 100), for a crop geometry.

All give int16 coefficients on JPEG's scale (orthonormal DCT-II of ``x - 128``), channels
in the preset's order: Y, then Cb, then Cr.
"""

from __future__ import annotations

import os
import warnings
from typing import Literal

import numpy as np

from freqdata.coefficients import component_cube, luma_grid
from freqdata.dct import BLOCK, block_dct
from freqdata.dctnet import encode_dctnet
from freqdata.errors import UsageError
from freqdata.jpeg import (
    DamagedJpegWarning,
    JpegError,
    JpegTooLargeError,
    UnsupportedJpegError,
    read_coefficients,
)
from freqdata.limits import DEFAULT_MAX_PIXELS
from freqdata.pixels import Geometry, load_ycbcr, parse_geometry
from freqdata.presets import Preset, resolve_preset

Source = str | os.PathLike | bytes
Cube = np.ndarray | tuple[np.ndarray, np.ndarray]
PATHS = ("coeff", "pixels", "dctnet")
CHROMA = ("full", "native")


def encode_image(
    src: Source,
    preset: str | Preset = "dctnet-24",
    path: Literal["coeff", "pixels", "dctnet"] = "coeff",
    geometry: str | Geometry = "none",
    chroma: Literal["full", "native"] = "full",
    *,
    rng: np.random.Generator | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    lenient: bool = False,
) -> Cube:
    """Encode one image (path or bytes) into a channel-selected DCT cube.

    Returns, for ``chroma="full"``, one int16 array ``(C, Hb, Wb)`` (C = preset channels,
    Y then Cb then Cr). For ``chroma="native"`` a pair ``(luma (Cy, Hb, Wb), chroma (2*Cc,
    Hbc, Wbc))`` with chroma at the file's own sampling (half the grid for 4:2:0).

    ``geometry="none"`` keeps the whole image, padded up to whole 8x8 blocks (coefficient
    path: libjpeg's encoder padding; pixel path: edge replication); ``Hb = ceil(H / 8)``.
    Other geometries (``resnet``, ``mobilenet``, ``S:C``) need ``path="pixels"``; ``rng``
    switches them to random-resized crop + random horizontal flip (training augmentation).
    ``path="dctnet"`` needs a crop geometry, ``chroma="full"`` and no ``rng``.

    ``lenient=True`` (every path): a JPEG that libjpeg reports as damaged
    or truncated is encoded as far as it decodes, with a
    :class:`freqdata.jpeg.DamagedJpegWarning`, instead of raising (docs/api.md, "Damaged
    inputs").

    Raises :class:`freqdata.errors.UsageError` for bad options and
    :class:`freqdata.jpeg.JpegError` / :class:`freqdata.pixels.ImageDecodeError` (both
    :class:`freqdata.errors.InputError`) for bad images; all are ``ValueError``.
    """
    p = resolve_preset(preset) if isinstance(preset, str) else preset
    geo = parse_geometry(geometry) if isinstance(geometry, str) else geometry
    if path not in PATHS:
        raise UsageError(f"unknown path {path!r}: choose one of {', '.join(PATHS)}")
    if chroma not in CHROMA:
        raise UsageError(f"unknown chroma {chroma!r}: choose one of {', '.join(CHROMA)}")
    if path == "coeff":
        if geo.resize is not None or geo.crop is not None:
            raise UsageError(
                f"geometry {geo.name!r} resamples pixels: use path='pixels' "
                "(the coefficient path keeps the whole image, geometry='none')"
            )
        return _from_coefficients(src, p, chroma, max_pixels, lenient)
    if path == "dctnet":
        if chroma != "full" or rng is not None or geo.crop is None:
            raise UsageError(
                "path 'dctnet' is DCTNet's evaluation transform: it needs a crop geometry "
                "(resnet, mobilenet or S:C), chroma 'full' and no rng"
            )
        return encode_dctnet(src, p, geo, max_pixels=max_pixels, lenient=lenient)
    return _from_pixels(src, p, geo, chroma, rng, max_pixels, lenient)


def _join(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, chroma: str) -> Cube:
    c = np.concatenate([cb, cr])
    return np.concatenate([y, c]) if chroma == "full" else (y, c)


def _from_coefficients(
    src: Source, p: Preset, chroma: str, max_pixels: int, lenient: bool
) -> Cube:
    try:
        coefs = read_coefficients(src, max_pixels=max_pixels)
    except (UnsupportedJpegError, JpegTooLargeError):
        raise
    except JpegError as e:
        if not lenient:
            raise
        warnings.warn(DamagedJpegWarning(f"decoded despite damage: {e}"), stacklevel=3)
        coefs = read_coefficients(src, max_pixels=max_pixels, strict=False)
    if chroma == "full":  # each component written straight into its channels of the cube
        ny, nc = len(p.y), len(p.cb)
        out = np.empty((ny + nc + len(p.cr), *luma_grid(coefs)), dtype=np.int16)
        component_cube(coefs, 0, p.y, upsample=False, out=out[:ny])
        component_cube(coefs, 1, p.cb, upsample=True, out=out[ny : ny + nc])
        component_cube(coefs, 2, p.cr, upsample=True, out=out[ny + nc :])
        return out
    y = component_cube(coefs, 0, p.y, upsample=False)
    cb = component_cube(coefs, 1, p.cb, upsample=False)
    cr = component_cube(coefs, 2, p.cr, upsample=False)
    return _join(y, cb, cr, chroma)


def _box_downsample(plane: np.ndarray, fv: int, fh: int) -> np.ndarray:
    """Mean of ``fv x fh`` boxes, edge-padded so the result is whole 8x8 blocks; float32."""
    h, w = plane.shape
    mh, mw = BLOCK * fv, BLOCK * fh
    padded = np.pad(plane, ((0, -h % mh), (0, -w % mw)), mode="edge").astype(np.float32)
    hh, ww = padded.shape
    return padded.reshape(hh // fv, fv, ww // fh, fh).mean(axis=(1, 3))


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.rint(x).astype(np.int16)  # |x| <= 1024 on 8-bit samples: no overflow


def _from_pixels(
    src: Source,
    p: Preset,
    geo: Geometry,
    chroma: str,
    rng: np.random.Generator | None,
    max_pixels: int,
    lenient: bool,
) -> Cube:
    img = load_ycbcr(src, geo, rng=rng, max_pixels=max_pixels, lenient=lenient)
    y = _to_int16(block_dct(img.planes[0], p.y))
    hy, vy = img.sampling[0]
    out = []
    for comp, select in ((1, p.cb), (2, p.cr)):
        plane = img.planes[comp]
        if chroma == "native" and comp < len(img.sampling):
            hc, vc = img.sampling[comp]
            plane = _box_downsample(plane, vy // vc, hy // hc)
        out.append(_to_int16(block_dct(plane, select)))
    return _join(y, *out, chroma)
