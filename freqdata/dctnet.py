"""DCTNet compatibility: the input transform of DCTNet's released code, computed directly.

DCTNet (Xu et al., "Learning in the Frequency Domain", CVPR 2020; the kaix90/DCTNet
repository, ``classification/datasets``: ``cvfunctional.py``, ``cvtransforms.py``,
``dataloader_imagenet_dct.py``) feeds its ImageNet networks with, per image:

1. ``cv2.imread`` (BGR; EXIF orientation applied);
2. ``Resize(S)``: the shorter side to ``S``, the other to ``int(S * other / shorter)``
   (truncated), ``cv2.resize`` with ``INTER_LINEAR``; nothing when the shorter side already
   is ``S``;
3. ``CenterCrop(C)``: offsets ``int(round((dim - C) * 0.5))`` (Python 3 ``round``);
4. ``Upscale(2)``: ``cv2.resize`` of the crop to ``2C x 2C``, ``INTER_LINEAR``;
5. ``TransformUpscaledDCT``: the crop and the upscale are each JPEG-encoded by libjpeg-turbo
   at quality 100 with 4:2:0 subsampling and read back with jpeg2dct; luma comes from the
   crop, Cb and Cr from the upscale, whose 4:2:0 chroma is ``C x C``: on the luma's grid;
6. ``SubsetDCT`` / ``Aggregate`` (the ``dctnet-*`` presets, Y then Cb then Cr) and
   ``NormalizeDCT`` with ``train_upscaled_static_mean`` / ``_std``.

``S:C`` = 512:448 (``resnet``) or 1024:896 (``mobilenet``). :func:`dctnet_planes` and
:func:`encode_dctnet` compute steps 1-5 without encoding a JPEG:

* :func:`resize_linear` is OpenCV's ``INTER_LINEAR`` for uint8 bit for bit: half-pixel
  centres, no antialiasing, 11-bit fixed-point weights ``saturate_cast<short>(w * 2048)``
  (source columns clamped at the borders, rows not: their indices are), then
  ``(((H0 >> 4) * b0 >> 16) + ((H1 >> 4) * b1 >> 16) + 2) >> 2`` for the vertical pass
  (OpenCV's vectorised rounding; equal to ``cv2.resize`` 4.10 and 5.1 on every sample
  tested);
* colour: libjpeg's fixed-point RGB -> YCbCr (:func:`freqdata.pixels.rgb_to_ycbcr`);
* :func:`downsample_h2v2` is libjpeg's 4:2:0 chroma downsampling (``jcsample.c``): the mean
  of each 2x2 box, ``(sum + bias) >> 2`` with ``bias`` 1, 2, 1, 2 ... along a row;
* the DCT is libjpeg's default forward DCT, the integer ``jpeg_fdct_islow``
  (``jfdctint.c``: 13-bit constants, 2 extra bits between the passes, output 8 times the
  orthonormal DCT of ``x - 128``), and quality 100 quantizes with step 1: the output divided
  by 8, rounded half away from zero (``jcdctmgr.c``). :func:`fdct_islow` reproduces it;
  rounding the float DCT instead would differ by 1 on about 6% of the coefficients.

Tested against Pillow's libjpeg-turbo encoder at quality 100, 4:2:0, read back with
:func:`freqdata.read_coefficients` (tests/test_dctnet.py).

The decoded RGB is :func:`freqdata.pixels.load_rgb` (libjpeg's own decode, as OpenCV's).
:data:`STATISTICS` holds DCTNet's published normalization table under the name
``"dctnet"``; :func:`named_statistics` selects a store's channels from it, so DCTNet's
released checkpoints receive the inputs they were trained on.
"""

from __future__ import annotations

import os
import re

import numpy as np

from freqdata.dct import BLOCK
from freqdata.errors import UsageError
from freqdata.limits import DEFAULT_MAX_PIXELS
from freqdata.pixels import (
    Geometry,
    centre_offset,
    load_rgb,
    parse_geometry,
    resized_size,
    rgb_to_ycbcr,
)
from freqdata.presets import Preset, resolve_preset

__all__ = [
    "STATISTICS",
    "dctnet_planes",
    "downsample_h2v2",
    "encode_dctnet",
    "fdct_islow",
    "named_statistics",
    "resize_linear",
]

_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS
_COEF_ONE = np.float32(1 << _COEF_BITS)


def _linear_taps(
    src: int, dst: int, clamp: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(i0, i1, w0, w1)``: the two source indices and 11-bit weights of each output sample.

    OpenCV's ``resize`` tables: ``f = float32((d + 0.5) * scale - 0.5)`` with ``scale =
    1 / (dst / src)``, ``s = floor(f)``, ``f -= s``; with ``clamp`` (columns) a sample left
    of the first or right of the last source centre takes that sample with weight 1. Weights
    ``saturate_cast<short>((1 - f) * 2048)`` and ``(f * 2048)`` (round half to even).
    """
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = f - s.astype(np.float32)
    if clamp:
        low, high = s < 0, s >= src - 1
        f[low | high] = 0
        s[low] = 0
        s[high] = src - 1
    w1 = np.rint(f * _COEF_ONE).astype(np.int64)
    w0 = np.rint((np.float32(1) - f) * _COEF_ONE).astype(np.int64)
    return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), w0, w1


def resize_linear(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)`` for uint8 images.

    ``img``: ``(H, W)`` or ``(H, W, K)`` uint8. Returns ``(height, width[, K])`` uint8, bit
    for bit OpenCV's fixed-point result (module docstring). int64 intermediates: about
    ``8 * K`` bytes per output sample and source row.
    """
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise UsageError(f"resize_linear needs (H, W[, K]) uint8, got {img.dtype} {img.shape}")
    if width <= 0 or height <= 0:
        raise UsageError(f"resize_linear: output size must be positive, got {width}x{height}")
    h, w = img.shape[:2]
    extra = (None,) * (img.ndim - 2)
    x0, x1, a0, a1 = _linear_taps(w, width, clamp=True)
    y0, y1, b0, b1 = _linear_taps(h, height, clamp=False)
    rows = np.unique(np.concatenate([y0, y1]))  # only the source rows the output reads
    src = img[rows].astype(np.int64)
    across = src[:, x0] * a0[(slice(None), *extra)] + src[:, x1] * a1[(slice(None), *extra)]
    across >>= 4
    r0, r1 = np.searchsorted(rows, y0), np.searchsorted(rows, y1)
    col = (slice(None), None, *extra)
    out = (across[r0] * b0[col] >> 16) + (across[r1] * b1[col] >> 16) + 2
    out >>= 2
    return np.clip(out, 0, 255).astype(np.uint8)


def downsample_h2v2(plane: np.ndarray) -> np.ndarray:
    """libjpeg's 4:2:0 downsampling of a ``(2H, 2W)`` uint8 plane → ``(H, W)`` uint8.

    ``(a + b + c + d + bias) >> 2`` over each 2x2 box, ``bias`` alternating 1, 2, 1, 2 ...
    along every output row from its first column (``jcsample.c`` ``h2v2_downsample``).
    """
    h, w = plane.shape
    if h % 2 or w % 2:
        raise UsageError(f"downsample_h2v2 needs even sides, got {plane.shape}")
    boxes = plane.astype(np.int32).reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))
    boxes += 1 + (np.arange(w // 2) & 1)
    return (boxes >> 2).astype(np.uint8)


# jfdctint.c: CONST_BITS 13, PASS1_BITS 2, FIX(x) = round(x * 2**13)
_CONST_BITS, _PASS1_BITS = 13, 2
_F0298, _F0390, _F0541, _F0765, _F0899, _F1175 = 2446, 3196, 4433, 6270, 7373, 9633
_F1501, _F1847, _F1961, _F2053, _F2562, _F3072 = 12299, 15137, 16069, 16819, 20995, 25172


def _descale(x: np.ndarray, n: int) -> np.ndarray:
    return (x + (1 << (n - 1))) >> n


def _fdct_pass(d: list[np.ndarray], first: bool) -> list[np.ndarray]:
    """One 1-D pass of ``jpeg_fdct_islow`` over the 8 arrays ``d[0..7]`` (int64)."""
    shift = _CONST_BITS - _PASS1_BITS if first else _CONST_BITS + _PASS1_BITS
    t0, t7 = d[0] + d[7], d[0] - d[7]
    t1, t6 = d[1] + d[6], d[1] - d[6]
    t2, t5 = d[2] + d[5], d[2] - d[5]
    t3, t4 = d[3] + d[4], d[3] - d[4]
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    out: list[np.ndarray] = [t10] * 8
    if first:
        out[0], out[4] = (t10 + t11) << _PASS1_BITS, (t10 - t11) << _PASS1_BITS
    else:
        out[0], out[4] = _descale(t10 + t11, _PASS1_BITS), _descale(t10 - t11, _PASS1_BITS)
    z1 = (t12 + t13) * _F0541
    out[2] = _descale(z1 + t13 * _F0765, shift)
    out[6] = _descale(z1 - t12 * _F1847, shift)
    z1, z2, z3, z4 = t4 + t7, t5 + t6, t4 + t6, t5 + t7
    z5 = (z3 + z4) * _F1175
    z1, z2 = z1 * -_F0899, z2 * -_F2562
    z3, z4 = z3 * -_F1961 + z5, z4 * -_F0390 + z5
    out[7] = _descale(t4 * _F0298 + z1 + z3, shift)
    out[5] = _descale(t5 * _F2053 + z2 + z4, shift)
    out[3] = _descale(t6 * _F3072 + z2 + z3, shift)
    out[1] = _descale(t7 * _F1501 + z1 + z4, shift)
    return out


def fdct_islow(plane: np.ndarray, select: list[int]) -> np.ndarray:
    """libjpeg's quality-100 coefficients of a ``(H, W)`` uint8 plane: ``(len(select), H/8,
    W/8)`` int16, natural indices ``8v + u``.

    ``jpeg_fdct_islow`` of each 8x8 block of ``x - 128`` (rows, then columns), then
    quantization with step 1: ``sign(t) * ((|t| + 4) >> 3)``. H and W multiples of 8.
    """
    h, w = plane.shape
    if h % BLOCK or w % BLOCK:
        raise UsageError(f"fdct_islow needs sides that are multiples of {BLOCK}, got {plane.shape}")
    x = plane.astype(np.int64).reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK) - 128
    rows = _fdct_pass([x[..., u] for u in range(BLOCK)], first=True)  # over u, each (Hb, 8, Wb)
    cols = [_fdct_pass([r[:, v] for v in range(BLOCK)], first=False) for r in rows]
    out = np.empty((len(select), h // BLOCK, w // BLOCK), np.int16)
    for i, k in enumerate(select):
        t = cols[k % BLOCK][k // BLOCK]  # horizontal frequency u = k % 8, vertical v = k // 8
        out[i] = np.sign(t) * ((np.abs(t) + 4) >> 3)
    return out


def _crop_geometry(geometry: str | Geometry) -> Geometry:
    geo = parse_geometry(geometry)
    if geo.crop is None or geo.resize is None:
        raise UsageError(
            f"the DCTNet transform needs a resize + centre crop geometry (resnet, mobilenet or "
            f"S:C), got {geo.name!r}"
        )
    return geo


def dctnet_planes(
    src: str | os.PathLike[str] | bytes,
    geometry: str | Geometry = "resnet",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    lenient: bool = False,
) -> np.ndarray:
    """The YCbCr samples DCTNet's JPEG encoder sees: ``(3, C, C)`` uint8.

    Plane 0: the luma of the ``C x C`` crop (steps 1-3 of the module docstring, always with
    DCTNet's rounding whatever ``geometry.rule`` says). Planes 1, 2: Cb and Cr of the crop
    upscaled 2x (:func:`resize_linear`), downsampled by :func:`downsample_h2v2`.
    ``geometry``: a crop geometry (``resnet``, ``mobilenet`` or ``S:C``). Raises as
    :func:`freqdata.pixels.load_ycbcr`; ``lenient`` as there.
    """
    geo = _crop_geometry(geometry)
    assert geo.crop is not None and geo.resize is not None
    rgb = load_rgb(src, max_pixels=max_pixels, lenient=lenient)
    h, w = rgb.shape[:2]
    if min(w, h) != geo.resize:
        tw, th = resized_size(w, h, geo.resize, "dctnet")
        rgb = resize_linear(rgb, tw, th)
        h, w = th, tw
    c = geo.crop
    top, left = centre_offset(h, c, "dctnet"), centre_offset(w, c, "dctnet")
    crop = np.ascontiguousarray(rgb[top : top + c, left : left + c])
    out = np.empty((3, c, c), np.uint8)
    out[0] = rgb_to_ycbcr(crop)[0]
    up = rgb_to_ycbcr(resize_linear(crop, 2 * c, 2 * c))
    out[1] = downsample_h2v2(up[1])
    out[2] = downsample_h2v2(up[2])
    return out


def encode_dctnet(
    src: str | os.PathLike[str] | bytes,
    preset: str | Preset = "dctnet-24",
    geometry: str | Geometry = "resnet",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    lenient: bool = False,
) -> np.ndarray:
    """DCTNet's input cube for one image: ``(C, Hb, Wb)`` int16, channels Y, Cb, Cr of
    ``preset``, ``Hb = Wb = crop / 8``; the 8x8 DCT of :func:`dctnet_planes` rounded to
    integers as libjpeg does at quality 100 (:func:`fdct_islow`). Also
    ``encode_image(src, preset, "dctnet", geometry)``.
    """
    p = resolve_preset(preset) if isinstance(preset, str) else preset
    planes = dctnet_planes(src, geometry, max_pixels=max_pixels, lenient=lenient)
    return np.concatenate([fdct_islow(planes[k], s) for k, s in enumerate((p.y, p.cb, p.cr))])


# ------------------------------------------------------------------- normalization statistics

# fmt: off
_MEAN = np.array([
    -88.397, 0.014242, 0.0034117, 0.0070792, 0.024295, 0.0048884, 0.011029, 0.014621, 0.4438,
    -0.014657, -0.0054878, -0.0074716, -0.0017573, -0.0019678, -0.0010014, -0.00067293, -0.032971,
    -0.0069187, -0.0045815, -0.0032968, 0.00029935, -0.0010084, 9.2506e-05, -0.00091809, 0.027731,
    -0.0068864, -0.0043638, -0.0034875, -0.00074995, -0.00012685, -9.9695e-05, 0.00042945,
    0.021127, 0.013356, 0.012893, 0.013848, 0.00080353, 0.013728, 0.013314, 0.013362, 0.0056187,
    -0.0038503, -0.0016255, -0.00089914, -0.00060506, -9.618e-05, 0.00028288, 0.00051148,
    -0.0060038, -0.001058, -0.00050092, 4.1829e-05, -0.00010169, -0.00034269, 0.00016878,
    -0.00024374, -0.00063966, -0.0001759, -0.00050322, -0.00010794, 0.00010911, 0.0012639,
    0.00048865, 0.0023114, -58.709, -0.14975, 0.015083, -0.15743, 0.013664, -0.21918, 0.017582,
    -0.62055, 0.13488, -0.0042079, -0.0010616, 8.0632e-05, 1.8554e-05, 0.00046599, -1.611e-05,
    0.00037761, -0.0032042, -0.0021745, 0.00017846, -0.0025755, -6.3193e-05, -0.0061709,
    2.2338e-05, -0.027234, 0.014375, -0.0001592, 0.0001056, 2.0734e-05, 8.9964e-06, 6.6089e-05,
    -2.2969e-05, 8.5885e-05, 0.014262, 0.013967, 0.012928, 0.011558, 0.0059293, 0.0080587,
    0.012185, -0.0039466, 0.0039497, 0.00032286, 4.7901e-05, 1.1759e-05, -5.8365e-06, 3.3193e-06,
    2.2425e-05, 4.2256e-05, 0.00052415, 0.00041421, -9.4003e-05, -0.00089865, 5.5458e-05,
    -0.0023636, 7.7944e-05, -0.0076696, 0.00017445, 8.6328e-05, 4.4323e-05, 1.478e-05, 2.5238e-05,
    -9.2798e-06, -4.1784e-06, -1.3018e-05, 32.116, -0.14412, 0.012337, -0.1512, 0.008572, -0.21042,
    0.01523, -0.59077, -0.13207, -0.0040276, -0.00093269, 0.00010862, 4.1762e-05, 0.00046122,
    2.8299e-05, 0.00032597, -0.0039396, -0.0022667, 6.7284e-05, -0.0026205, 0.00016429, -0.0066546,
    0.00025047, -0.02864, -0.011487, -0.00020323, 2.9561e-05, 3.432e-05, -2.2354e-05, 5.467e-05,
    9.8016e-07, 9.6956e-05, 0.0093471, 0.013498, 0.012898, 0.010983, 0.0055875, 0.0075598,
    0.011768, -0.0051549, -0.0028011, 0.00023734, 3.9085e-05, 3.7114e-05, 3.3999e-05, -7.5e-06,
    -1.0987e-05, 7.5305e-05, -0.0013658, 0.00030618, 9.6108e-05, -0.00093444, 4.5678e-05,
    -0.002439, 0.00012077, -0.0083779, -0.00034181, 0.00013019, 3.5683e-06, 5.3878e-06,
    -4.0862e-07, -9.4194e-06, -9.6086e-07, 2.7884e-05
])
_STD = np.array([
    259.96, 2.7776, 2.0454, 1.3947, 1.1929, 0.86391, 0.68394, 0.57572, 3.9907, 0.5662, 0.59385,
    0.43958, 0.38698, 0.30748, 0.26694, 0.22055, 2.4791, 0.59187, 0.64341, 0.46003, 0.40897,
    0.31736, 0.27511, 0.2124, 1.6547, 0.44618, 0.46693, 0.36985, 0.33952, 0.26992, 0.23661,
    0.20211, 1.3388, 0.39514, 0.42135, 0.34065, 0.32892, 0.25796, 0.22765, 0.18097, 1.0203,
    0.31577, 0.3287, 0.27429, 0.26293, 0.22137, 0.19189, 0.18148, 0.84185, 0.27672, 0.28746,
    0.24236, 0.23329, 0.19236, 0.17785, 0.14372, 0.73554, 0.22719, 0.22219, 0.20297, 0.18347,
    0.18323, 0.14515, 0.22195, 81.161, 0.49091, 0.31735, 0.20449, 0.11882, 0.12908, 0.050844,
    0.26862, 0.78728, 0.10321, 0.096477, 0.062715, 0.046128, 0.033353, 0.023952, 0.018714, 0.38195,
    0.097172, 0.10334, 0.063937, 0.049453, 0.035066, 0.025177, 0.032152, 0.23052, 0.063559,
    0.065152, 0.043934, 0.035844, 0.025748, 0.019563, 0.01557, 0.13944, 0.049192, 0.052346,
    0.03709, 0.03356, 0.023967, 0.018798, 0.02198, 0.098602, 0.035452, 0.036885, 0.026706, 0.02365,
    0.017736, 0.014376, 0.012149, 0.06454, 0.026415, 0.027738, 0.021018, 0.01909, 0.015044,
    0.012555, 0.014048, 0.051324, 0.019759, 0.020474, 0.016161, 0.01488, 0.012156, 0.010401,
    0.010198, 75.848, 0.46409, 0.29777, 0.19486, 0.1079, 0.12831, 0.045828, 0.27543, 0.70298,
    0.094832, 0.08731, 0.056864, 0.040744, 0.029727, 0.02135, 0.016915, 0.3597, 0.087856, 0.092837,
    0.056967, 0.043606, 0.031381, 0.022382, 0.031701, 0.21259, 0.057565, 0.058307, 0.039093,
    0.031663, 0.022917, 0.017423, 0.014101, 0.12614, 0.043897, 0.046633, 0.033022, 0.029742,
    0.021378, 0.01693, 0.020954, 0.090127, 0.031778, 0.032939, 0.023828, 0.021016, 0.01592,
    0.012976, 0.01118, 0.058509, 0.023753, 0.024662, 0.018851, 0.017072, 0.013647, 0.011419,
    0.013227, 0.047294, 0.017943, 0.018471, 0.014692, 0.013447, 0.01115, 0.0096059, 0.0096861
])
# fmt: on


STATISTICS: dict[str, tuple[np.ndarray, np.ndarray]] = {"dctnet": (_MEAN, _STD)}
"""Named per-coefficient statistics ``(mean, std)``, each ``(192,)`` float64 in natural
order: Y0..Y63, Cb0..Cb63, Cr0..Cr63. ``"dctnet"``: DCTNet's ``train_upscaled_static_mean`` /
``train_upscaled_static_std`` (kaix90/DCTNet ``classification/datasets/__init__.py``, the
table its ImageNet loaders normalize with), copied verbatim."""

_CHANNEL = re.compile(r"^(Y|Cb|Cr)(\d+)$")
_OFFSET = {"Y": 0, "Cb": 64, "Cr": 128}


def named_statistics(name: str, channel_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)``, each ``(C,)`` float64, of the named table for these channels.

    ``channel_names``: a store's names (``Y<k>``, ``Cb<k>``, ``Cr<k>``, natural ``k``;
    ``ImageStore.channel_names``), in the cube's order. Use them in place of the store's own
    statistics, e.g. ``freqdata.transforms.Normalize(*named_statistics("dctnet", names))``.
    """
    if name not in STATISTICS:
        raise UsageError(f"unknown statistics {name!r}: choose one of {', '.join(STATISTICS)}")
    index = []
    for ch in channel_names:
        m = _CHANNEL.match(ch)
        if m is None or int(m.group(2)) > 63:
            raise UsageError(f"statistics {name!r}: no entry for channel {ch!r}")
        index.append(_OFFSET[m.group(1)] + int(m.group(2)))
    mean, std = STATISTICS[name]
    return mean[index].copy(), std[index].copy()
