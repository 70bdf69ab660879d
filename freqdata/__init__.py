"""freqdata: deep learning in the frequency domain.

The public API fits on one page (docs/api.md):

* :data:`PRESETS`, :func:`resolve_preset` — which DCT channels a cube keeps;
* :func:`read_coefficients` — a JPEG's own dequantized DCT coefficients (no inverse DCT);
* :func:`encode_image` — one image → a channel-selected DCT cube ``(C, Hb, Wb)`` int16;
* :func:`encode_images` — a folder or list of images → a Zarr v3 store;
* :func:`open_store` — read a store back: ``len(store)``, ``store[i]`` → ``(cube, label)``;
* :func:`make_loader`, :func:`to_device` — stream a store into PyTorch (imports torch on
  first use, so ``import freqdata`` stays light).

Conventions (docs/conventions.md): orthonormal 8x8 DCT-II of ``x - 128`` (JPEG's scale),
coefficient ``k = 8v + u``, JFIF YCbCr, channels Y then Cb then Cr.
"""

__version__ = "0.1.0"

from freqdata.encode import encode_image
from freqdata.job import EncodeOptions, EncodeSummary, encode_images
from freqdata.jpeg import JpegCoefficients, JpegError, UnsupportedJpegError, read_coefficients
from freqdata.presets import PRESETS, Preset, load_preset, resolve_preset
from freqdata.store import ImageStore, open_store

_TORCH_EXPORTS = {"make_loader": "freqdata.loader", "to_device": "freqdata.loader"}


def __getattr__(name: str):  # lazy: the torch-based API is imported on first use
    if name in _TORCH_EXPORTS:
        import importlib

        return getattr(importlib.import_module(_TORCH_EXPORTS[name]), name)
    raise AttributeError(f"module 'freqdata' has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "EncodeOptions",
    "EncodeSummary",
    "ImageStore",
    "JpegCoefficients",
    "JpegError",
    "Preset",
    "UnsupportedJpegError",
    "__version__",
    "encode_image",
    "encode_images",
    "load_preset",
    "make_loader",
    "open_store",
    "read_coefficients",
    "resolve_preset",
    "to_device",
]
