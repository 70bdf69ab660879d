"""NVIDIA DALI pipelines that produce freqdata's pixel-path cubes, on the CPU or the GPU.

Optional: needs the ``dali`` extra (``pip install 'freqdata[dali]'``, i.e. the
``nvidia-dali-cuda120`` wheel) and torch. Importing this module without DALI raises an
``ImportError`` that names the extra; ``import freqdata`` never imports it.

What a batch is (:class:`DaliCubeLoader`): a dict in the batch format of
:func:`freqdata.make_loader` (docs/loader.md, "Batch format"): ``cubes`` a float32 tensor
``(B, C, Hb, Wb)`` (C = the preset's channels, Y then Cb then Cr, natural indices ``8v+u``;
``Hb = Wb = crop / 8``) on the loader's device, ``labels`` an int64 tensor ``(B,)`` on the
same device (``-1`` = unlabelled) and ``indices`` ``(B,)`` int64, each sample's position in
the input list (DALI's file reader carries it as the sample's label; the class label is
looked up from it). The numbers are those of
``encode_image(src, preset, "pixels", geometry)`` (orthonormal 8x8 DCT-II of ``x - 128`` of
JFIF full-range BT.601 YCbCr planes; docs/conventions.md) up to resampling differences: DALI's
resize is not Pillow's (see below and ``tests/test_dali.py`` for the measured agreement).

One pipeline, two placements (``device="cpu"`` | ``"gpu"``), every step shared:

1. ``fn.readers.file(files, labels)``: in order, or (``shuffle``) a new global permutation
   every epoch drawn from the pipeline seed (``shuffle_after_epoch``); the last batch of an
   epoch is padded inside DALI and trimmed by the iterator, so every epoch yields each file
   exactly once and starts afresh (without ``pad_last_batch`` DALI's reader would carry the
   overflow of one epoch into the next);
2. decode to RGB: ``fn.decoders.image(device="cpu")`` (libjpeg-turbo) or ``device="mixed"``
   (nvJPEG), both with ``jpeg_fancy_upsampling=True`` (libjpeg's triangular chroma
   upsampling, what Pillow and the pixel path get) and ``adjust_orientation=True`` (EXIF
   orientation applied by the decoder; measured identical to Pillow decode + transpose for
   all seven orientations);
3. geometry, in DALI on the decoded image's device:

   * evaluation (``train=False``): ``fn.resize(resize_shorter=S, INTERP_LINEAR,
     antialias=True, subpixel_scale=False)``: the other side is ``round(other * S /
     shorter)`` and each axis is scaled by output/input size, as Pillow does (DALI's default
     ``subpixel_scale=True`` keeps the unrounded scale, which shifts samples by up to 0.2
     px across a 768-px side and doubled the luma differences), then ``fn.crop`` of the
     centre ``C x C`` at offset ``floor((dim - C) / 2)`` (the pixel path's; DALI's default
     ``crop_pos=0.5`` rounds half up, so :data:`_CENTRE` is 0.5 minus a hair, which turns
     DALI's rounding into a floor for any dim < 10**5; a one-pixel shift would cost
     hundreds of units on edges). The named geometries (``resnet``, ``mobilenet``:
     ``Geometry.rule == "dctnet"``) compute the pixel path's DCTNet rounding from the
     decoded shape instead: ``fn.resize(resize_x=, resize_y=)`` with the other side
     ``(S * other) // shorter`` (truncated) and ``fn.crop`` at ``crop_pos = o / (dim - C)``,
     ``o = round((dim - C) / 2)`` half to even (:func:`_dctnet_window`);
   * training (``train=True``): ``fn.random_resized_crop(size=C)`` (torchvision's
     RandomResizedCrop: area 0.08-1, aspect 3/4-4/3, 10 attempts; bilinear, antialiased),
     then ``fn.flip(horizontal=fn.random.coin_flip(0.5))``. ``S`` is not used, as in the
     pixel path. Random numbers come from the pipeline ``seed``: the same seed gives the
     same crops and flips;

4. the batch ``(B, C, C, 3)`` uint8 RGB leaves DALI through
   ``nvidia.dali.plugin.pytorch.DALIGenericIterator`` as a torch tensor on the same device;
5. :func:`cubes_from_rgb` (torch, same device): :func:`rgb_to_jfif_ycbcr` (our own JFIF
   matrix, not DALI's ``types.YCbCr``, which is *studio-range* BT.601 — Y in 16..235 — and
   wrong for JPEG's numbers), then :func:`freqdata.dct_torch.block_dct` with the preset's
   selection per component.

Only step 2's backend and the tensors' device differ between ``cpu`` and ``gpu``, so the GPU
pipeline is the CPU one with the decode moved to nvJPEG (which may round a few samples
differently from libjpeg-turbo's IDCT). ``device="cpu"`` builds the DALI pipeline with
``device_id=None`` (DALI's CPU-only mode: runs on a machine without a GPU or CUDA driver).
``device="gpu"`` raises :class:`DaliDeviceError` (a ``RuntimeError``) on a machine where
``torch.cuda.is_available()`` is False.

Differences from the pixel path (measured in ``tests/test_dali.py``: mean absolute
difference 0.3-0.65 coefficient units per channel group, 99.9% of coefficients within 4
(luma) / 8 (chroma)):

* the main one: DALI decodes to RGB, clipping out-of-gamut colours to 0..255, resizes RGB
  and converts back; the pixel path resizes the decoded YCbCr samples (no colour round
  trip). Pillow doing DALI's RGB route differs from the pixel path just as much, and from
  DALI by at most 3 units (rounding noise);
* when shrinking by 2x or more the pixel path lets libjpeg scale in the DCT domain first
  (``draft``), then resamples only the crop box; DALI decodes at full size;
* DALI's antialiased linear filter is not Pillow's bit for bit; JFIF samples are rounded
  half to even here (torch), half up in libjpeg's 16-bit fixed point.

Unlike ``freqdata encode``, a DALI pipeline stops at the first file it cannot decode: run
it on validated inputs (e.g. the ``paths`` of a store, whose failures were already logged).
Only crop geometries (fixed ``Hb x Wb``) are supported: a batch is one dense tensor.
Chroma is always ``full`` (Cb/Cr on the luma block grid).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from freqdata.dct import BLOCK
from freqdata.errors import UsageError
from freqdata.pixels import Geometry, parse_geometry
from freqdata.presets import Preset, resolve_preset
from freqdata.sources import Sources, list_sources

_EXTRA_HINT = (
    "freqdata.dali needs NVIDIA DALI: install the optional extra with "
    "`pip install 'freqdata[dali]'` (the nvidia-dali-cuda120 wheel; it runs without a GPU "
    "in CPU-only mode)"
)

try:
    import torch
except ImportError as e:  # pragma: no cover - torch is part of every freqdata install here
    raise ImportError(
        "freqdata.dali needs torch: `pip install 'freqdata[torch,dali]'`"
    ) from e

try:
    import nvidia.dali.math as dali_math
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.pipeline import Pipeline
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIGenericIterator
except ImportError as e:
    raise ImportError(f"{_EXTRA_HINT} ({e})") from e

from freqdata.dct_torch import block_dct  # noqa: E402  (needs torch, checked above)

__all__ = [
    "JFIF_MATRIX",
    "JFIF_OFFSET",
    "DaliCubeLoader",
    "DaliDeviceError",
    "build_pipeline",
    "cubes_from_rgb",
    "dali_version",
    "rgb_to_jfif_ycbcr",
]

Device = Literal["cpu", "gpu"]
DEVICES: tuple[str, ...] = ("cpu", "gpu")

#: JFIF full-range BT.601 RGB → YCbCr (rows Y, Cb, Cr; columns R, G, B), float64.
JFIF_MATRIX = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)
JFIF_MATRIX.setflags(write=False)
#: Offsets added after :data:`JFIF_MATRIX` (Y, Cb, Cr).
JFIF_OFFSET = np.array([0.0, 128.0, 128.0])
JFIF_OFFSET.setflags(write=False)

#: ``crop_pos`` giving the pixel path's centre offset ``floor((dim - C) / 2)``: DALI rounds
#: ``crop_pos * (dim - C)`` half up, so 0.5 would give ``ceil`` for odd ``dim - C``.
_CENTRE = 0.5 - 1e-6

_READER = "Reader"


def _dctnet_window(img: Any, resize: int, crop: int) -> tuple[Any, Any, Any, Any]:
    """DALI expressions ``(tw, th, crop_pos_x, crop_pos_y)`` of the pixel path's ``"dctnet"``
    rule (:func:`freqdata.pixels.resized_size`, :func:`freqdata.pixels.centre_offset`) for
    the decoded image node ``img`` (its run-time shape, on the CPU for any device): sizes
    as float, positions ``o / max(dim - C, 1)`` that DALI's crop turns back into ``o``."""
    shape = img.shape(dtype=types.INT32)
    h, w = shape[0], shape[1]
    portrait = fn.cast(w < h, dtype=types.INT32)
    tw = portrait * resize + (1 - portrait) * ((resize * w) // h)
    th = (1 - portrait) * resize + portrait * ((resize * h) // w)
    pos = []
    for dim in (tw, th):
        d = dim - crop  # round(d / 2) half to even: d // 2, plus 1 when d % 4 == 3
        o = d // 2 + fn.cast((d & 3) == 3, dtype=types.INT32)
        pos.append(fn.cast(o, dtype=types.FLOAT) / fn.cast(dali_math.max(d, 1), dtype=types.FLOAT))
    return fn.cast(tw, dtype=types.FLOAT), fn.cast(th, dtype=types.FLOAT), pos[0], pos[1]


class DaliDeviceError(RuntimeError):
    """The requested device cannot run here (``device="gpu"`` without CUDA)."""


def dali_version() -> str:
    """The installed DALI version string (e.g. ``"2.4.0"``)."""
    import nvidia.dali

    return str(nvidia.dali.__version__)


# --------------------------------------------------------------------------- torch part


def rgb_to_jfif_ycbcr(rgb: torch.Tensor, *, integer: bool = True) -> torch.Tensor:
    """JFIF full-range BT.601 YCbCr planes of channels-last RGB.

    ``rgb``: ``(..., H, W, 3)`` uint8 (or float 0..255) on any device. Returns
    ``(..., 3, H, W)`` float32 (Y, Cb, Cr) on the same device::

        Y  =       0.299    R + 0.587    G + 0.114    B
        Cb = 128 - 0.168736 R - 0.331264 G + 0.5      B
        Cr = 128 + 0.5      R - 0.418688 G - 0.081312 B

    ``integer=True`` rounds to the nearest integer (half to even) and clamps to 0..255, i.e.
    8-bit samples like the pixel path's planes; ``integer=False`` keeps the float32 values
    (within 2e-5 of the float64 formula).
    """
    if rgb.shape[-1] != 3:
        raise UsageError(f"expected channels-last RGB (..., H, W, 3), got {tuple(rgb.shape)}")
    x = rgb.to(torch.float32).movedim(-1, -3)  # (..., 3, H, W)
    r, g, b = x.unbind(-3)
    # elementwise, not a GEMM: exact float32 even where TF32 matmuls are enabled globally
    planes = [
        float(m[0]) * r + float(m[1]) * g + float(m[2]) * b + float(off)
        for m, off in zip(JFIF_MATRIX, JFIF_OFFSET, strict=True)
    ]
    ycc = torch.stack(planes, dim=-3)
    if integer:
        ycc = ycc.round_().clamp_(0.0, 255.0)
    return ycc


def cubes_from_rgb(
    rgb: torch.Tensor, preset: str | Preset = "dctnet-24", *, integer: bool = True
) -> torch.Tensor:
    """Channel-selected block-DCT cubes of a batch of RGB crops, on the input's device.

    ``rgb``: ``(B, H, W, 3)`` uint8 (H, W multiples of 8). Returns ``(B, C, H/8, W/8)``
    float32: the preset's Y coefficients, then Cb, then Cr (natural index ``8v+u``,
    orthonormal DCT-II of ``x - 128``, JPEG's scale). ``integer=True`` (default) gives the
    numbers a store holds: 8-bit JFIF samples and coefficients rounded to integers (exactly
    representable in int16); ``integer=False`` skips both roundings.

    The block DCT is a float32 GEMM: with TF32 matmuls enabled globally on the GPU
    (``torch.backends.cuda.matmul.allow_tf32`` / ``set_float32_matmul_precision("high")``)
    coefficients lose ~3 decimal digits (DC off by up to ~1); leave them off for exact cubes.
    """
    p = resolve_preset(preset) if isinstance(preset, str) else preset
    if rgb.ndim != 4:
        raise UsageError(f"expected a batch (B, H, W, 3), got shape {tuple(rgb.shape)}")
    planes = rgb_to_jfif_ycbcr(rgb, integer=integer)  # (B, 3, H, W)
    parts = [
        block_dct(planes[:, k], select)
        for k, select in enumerate((p.y, p.cb, p.cr))
        if len(select)
    ]
    cube = torch.cat(parts, dim=1)
    return cube.round_() if integer else cube


# --------------------------------------------------------------------------- DALI part


def _check_device(device: str) -> None:
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "gpu" and not torch.cuda.is_available():
        raise DaliDeviceError(
            "device='gpu' needs an NVIDIA GPU with a working CUDA driver, but "
            "torch.cuda.is_available() is False on this machine (and this torch build is "
            f"{torch.__version__}); use device='cpu' (DALI's CPU-only mode) instead"
        )


def _crop_geometry(geometry: str | Geometry) -> Geometry:
    geo = parse_geometry(geometry)
    if geo.crop is None or geo.resize is None:
        raise UsageError(
            f"geometry {geo.name!r} has no fixed crop: DALI batches are dense tensors, so use a "
            "crop geometry (resnet, mobilenet or S:C)"
        )
    return geo


def build_pipeline(
    files: Sequence[str | os.PathLike[str]],
    labels: Sequence[int] | None = None,
    geometry: str | Geometry = "resnet",
    *,
    train: bool = False,
    device: Device = "cpu",
    batch_size: int = 64,
    num_threads: int = 4,
    seed: int = 0,
    shuffle: bool | None = None,
    shard_id: int = 0,
    num_shards: int = 1,
    prefetch_queue_depth: int = 2,
    device_id: int = 0,
) -> Pipeline:
    """A built DALI pipeline with two outputs: ``"rgb"`` and ``"label"``.

    ``"rgb"``: ``(C, C, 3)`` uint8 RGB per sample (C = the geometry's crop), on the CPU for
    ``device="cpu"`` (``device_id=None``: no GPU used or needed) or on GPU ``device_id``
    for ``device="gpu"``. ``"label"``: ``(1,)`` int32 per sample, on the CPU.
    ``shuffle`` defaults to ``train``; shuffling, crops and flips are seeded by ``seed``.
    ``shard_id``/``num_shards`` split the files for data-parallel training. The reader is
    named ``"Reader"`` (for ``DALIGenericIterator(reader_name=...)``).
    """
    _check_device(device)
    geo = _crop_geometry(geometry)
    assert geo.crop is not None and geo.resize is not None
    paths = [os.fspath(f) for f in files]
    if not paths:
        raise UsageError("no input files")
    labs = [0] * len(paths) if labels is None else [int(v) for v in labels]
    if len(labs) != len(paths):
        raise UsageError(f"{len(paths)} files but {len(labs)} labels")
    if batch_size < 1 or num_threads < 1:
        raise UsageError("batch_size and num_threads must be >= 1")
    shuffle = train if shuffle is None else shuffle
    crop, resize = geo.crop, geo.resize
    decode_device = "mixed" if device == "gpu" else "cpu"

    @pipeline_def(
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=device_id if device == "gpu" else None,
        seed=seed,
        prefetch_queue_depth=prefetch_queue_depth,
    )
    def _pipe() -> tuple[Any, Any]:
        jpegs, label = fn.readers.file(
            files=paths,
            labels=labs,
            shuffle_after_epoch=shuffle,  # a global permutation per epoch (random_shuffle
            # would only shuffle within a 1024-sample buffer)
            pad_last_batch=True,  # every epoch starts at its first sample (no wrap-around)
            shard_id=shard_id,
            num_shards=num_shards,
            name=_READER,
        )
        img = fn.decoders.image(
            jpegs,
            device=decode_device,
            output_type=types.RGB,
            jpeg_fancy_upsampling=True,
            adjust_orientation=True,
        )
        if train:
            img = fn.random_resized_crop(
                img,
                size=(crop, crop),
                random_area=(0.08, 1.0),
                random_aspect_ratio=(3 / 4, 4 / 3),
                num_attempts=10,
                interp_type=types.INTERP_LINEAR,
                antialias=True,
            )
            img = fn.flip(img, horizontal=fn.random.coin_flip(probability=0.5))
        elif geo.rule == "dctnet":
            tw, th, pos_x, pos_y = _dctnet_window(img, resize, crop)
            img = fn.resize(
                img,
                resize_x=tw,
                resize_y=th,
                interp_type=types.INTERP_LINEAR,
                antialias=True,
                subpixel_scale=False,
            )
            img = fn.crop(img, crop=(crop, crop), crop_pos_x=pos_x, crop_pos_y=pos_y)
        else:
            img = fn.resize(
                img,
                resize_shorter=resize,
                interp_type=types.INTERP_LINEAR,
                antialias=True,
                subpixel_scale=False,
            )
            img = fn.crop(img, crop=(crop, crop), crop_pos_x=_CENTRE, crop_pos_y=_CENTRE)
        return img, label

    pipe = _pipe()
    pipe.build()
    return pipe


class DaliCubeLoader:
    """Iterable of batch dicts from a DALI pipeline (see the module docstring).

    ``src``: a :class:`freqdata.sources.Sources`, a folder / list file for
    :func:`freqdata.sources.list_sources`, or a sequence of image paths (with ``labels``,
    default all 0). Each batch: ``{"cubes": (B, C, Hb, Wb) float32, "labels": (B,) int64,
    "indices": (B,) int64}`` (positions in the input list), all on ``self.device`` (``cpu``
    or ``cuda:<device_id>``). ``mean``/``std``
    (per channel, e.g. ``store.mean``/``store.std``) normalize the cubes on that device.

    Every epoch yields each sample of this shard once (the last batch may be short); the
    loader resets itself at the end of an epoch, so ``for epoch ...: for batch in loader``
    works. ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(
        self,
        src: Sources | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        preset: str | Preset = "dctnet-24",
        geometry: str | Geometry = "resnet",
        *,
        labels: Sequence[int] | None = None,
        train: bool = False,
        device: Device = "cpu",
        batch_size: int = 64,
        num_threads: int = 4,
        seed: int = 0,
        shuffle: bool | None = None,
        shard_id: int = 0,
        num_shards: int = 1,
        integer: bool = True,
        mean: Sequence[float] | np.ndarray | None = None,
        std: Sequence[float] | np.ndarray | None = None,
        device_id: int = 0,
    ) -> None:
        if isinstance(src, Sources):
            files, labs = list(src.paths), list(src.labels) if labels is None else list(labels)
        elif isinstance(src, (str, os.PathLike)) and (Path(src).is_dir() or Path(src).is_file()):
            found = list_sources(src)
            files, labs = found.paths, found.labels if labels is None else list(labels)
        elif isinstance(src, (str, os.PathLike)):
            raise FileNotFoundError(f"{src} is neither a folder of images nor a list file")
        else:
            files = [os.fspath(f) for f in src]
            labs = [0] * len(files) if labels is None else list(labels)
        self.preset = resolve_preset(preset) if isinstance(preset, str) else preset
        self.geometry = _crop_geometry(geometry)
        self.integer = integer
        self.device = torch.device("cpu") if device == "cpu" else torch.device("cuda", device_id)
        self.batch_size = batch_size
        if len(labs) != len(files):
            raise UsageError(f"{len(files)} files but {len(labs)} labels")
        self.pipeline = build_pipeline(
            files,
            list(range(len(files))),  # the reader's label is the position: batch["indices"]
            self.geometry,
            train=train,
            device=device,
            batch_size=batch_size,
            num_threads=num_threads,
            seed=seed,
            shuffle=shuffle,
            shard_id=shard_id,
            num_shards=num_shards,
            device_id=device_id,
        )
        self._labels = torch.as_tensor(np.asarray(labs, np.int64), device=self.device)
        self._iter = DALIGenericIterator(
            [self.pipeline],
            ["rgb", "label"],
            reader_name=_READER,
            last_batch_policy=LastBatchPolicy.PARTIAL,
            auto_reset=True,
        )
        c = self.preset.channels
        self._norm: tuple[torch.Tensor, torch.Tensor] | None = None
        if (mean is None) != (std is None):
            raise UsageError("give both mean and std, or neither")
        if mean is not None and std is not None:
            m = torch.as_tensor(np.asarray(mean, np.float32), device=self.device)
            s = torch.as_tensor(np.asarray(std, np.float32), device=self.device)
            if m.shape != (c,) or s.shape != (c,):
                raise UsageError(f"mean/std must have {c} entries (one per channel)")
            self._norm = (m.view(c, 1, 1), s.view(c, 1, 1))

    @property
    def cube_shape(self) -> tuple[int, int, int]:
        """``(C, Hb, Wb)`` of one sample."""
        assert self.geometry.crop is not None
        side = self.geometry.crop // BLOCK
        return self.preset.channels, side, side

    def __len__(self) -> int:
        return len(self._iter)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self._iter:
            out = batch[0]
            rgb = out["rgb"]
            if rgb.device != self.device:  # CPU-only DALI hands back CPU tensors
                rgb = rgb.to(self.device, non_blocking=True)
            cubes = cubes_from_rgb(rgb, self.preset, integer=self.integer)
            if self._norm is not None:
                cubes = (cubes - self._norm[0]) / self._norm[1]
            indices = out["label"].reshape(-1).to(device=self.device, dtype=torch.int64)
            yield {"cubes": cubes, "labels": self._labels[indices], "indices": indices}
