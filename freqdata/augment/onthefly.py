"""The on-the-fly reference pipeline: JPEGs decoded in CPU workers, augmented on the pixels,
then the DCT — DCTNet's own training transform, no store.

:class:`JpegDataset` reads the inputs of a folder of class sub-folders (or a list file, or a
:class:`~freqdata.sources.Sources`) and encodes each one with
:func:`freqdata.encode_image` on the pixel path at a crop geometry (``"resnet"`` = 512 →
448, ``"S:C"``): in training (``train=True``) with an ``rng``, i.e. torchvision's
``RandomResizedCrop(C)`` on the decoded, oriented image (PIL ``BILINEAR``, the JPEG decoded
at a reduced DCT scale when the box allows it) + horizontal flip with p = 0.5, then the
block DCT of the ``C x C`` crop and the preset's channels; in evaluation the deterministic
resize + centre crop (what ``freqdata encode --path pixels --geometry ...`` stores).

:func:`make_jpeg_loader` yields the batch dicts of :func:`freqdata.make_loader` for a fixed
store — ``cubes`` ``(B, C, C/8, C/8)`` int16 raw coefficients, ``labels`` ``(B,)`` int64,
``indices`` ``(B,)`` int64 — in the same order (:class:`~freqdata.loader.StoreSampler`, same
``seed`` and epoch), so :class:`freqdata.transforms.DeviceAugment` (``train=False``: no
second crop or flip, normalization only) takes them as they are. The dataset stands in for
the store there: ``channel_names``, ``config`` (preset indices), ``mean``/``std`` (a named
table of :func:`freqdata.dctnet.named_statistics`, DCTNet's by default, or a store's).

Randomness: every sample gets its own generator ``numpy.random.default_rng([batch seed,
position in the batch])`` (the sampler's per-batch seed depends on ``seed``, epoch and batch
number), so a run is reproducible and independent of the number of workers.
A failing input raises (:class:`~freqdata.errors.InputError`): clean the folder first
(``freqdata encode`` records failures instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from freqdata.dctnet import named_statistics
from freqdata.encode import encode_image
from freqdata.errors import UsageError
from freqdata.limits import DEFAULT_MAX_PIXELS
from freqdata.loader import BatchRequest, StoreLoader, make_loader
from freqdata.pixels import parse_geometry
from freqdata.presets import resolve_preset
from freqdata.sources import Sources, list_sources, read_input

__all__ = ["JpegDataset", "make_jpeg_loader"]


class JpegDataset(Dataset):
    """Inputs → DCT cubes on the fly (module docstring). ``dataset[BatchRequest]`` (and
    :meth:`read_batch`) → one batch dict; ``len()`` is the number of inputs.

    ``src``: a folder of class sub-folders, a list file or :class:`Sources`; ``preset``:
    channel preset; ``geometry``: a crop geometry; ``train``: random-resized crop + flip
    (else resize + centre crop); ``statistics``: a table name for ``mean``/``std``, or an
    object with ``mean``/``std`` ``(C,)`` (e.g. an :class:`~freqdata.store.ImageStore` of the
    same preset).
    """

    def __init__(
        self,
        src: str | Path | Sources,
        preset: str = "dctnet-24",
        geometry: str = "resnet",
        *,
        train: bool = True,
        statistics: str | Any = "dctnet",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        lenient: bool = False,
    ) -> None:
        self.sources = src if isinstance(src, Sources) else list_sources(src)
        self.geometry = parse_geometry(geometry)
        if self.geometry.crop is None:
            raise UsageError(f"the on-the-fly pipeline needs a crop geometry (S:C), got "
                             f"{geometry!r}")  # fmt: skip
        p = resolve_preset(preset)
        self.preset, self.train = p, train
        self.max_pixels, self.lenient = max_pixels, lenient
        self.channel_names = ([f"Y{k}" for k in p.y] + [f"Cb{k}" for k in p.cb]
                              + [f"Cr{k}" for k in p.cr])  # fmt: skip
        self.config = {"preset": preset, "geometry": self.geometry.name, "path": "pixels",
                       "indices": {"y": p.y, "cb": p.cb, "cr": p.cr}}  # fmt: skip
        if isinstance(statistics, str):
            self.mean, self.std = named_statistics(statistics, self.channel_names)
        else:
            self.mean = np.asarray(statistics.mean, np.float64)
            self.std = np.asarray(statistics.std, np.float64)
        if self.mean.shape != (len(self.channel_names),):
            raise UsageError(f"statistics for {self.mean.shape} channels, the preset has "
                             f"{len(self.channel_names)}")  # fmt: skip
        self.labels = np.asarray(self.sources.labels, np.int64)
        self.class_names = list(self.sources.class_names)
        self.grid = self.geometry.blocks

    def __len__(self) -> int:
        return len(self.sources.paths)

    def encode(self, row: int, rng: np.random.Generator | None) -> np.ndarray:
        """Input ``row`` → ``(C, Hb, Wb)`` int16 (``rng``: None = the evaluation geometry)."""
        data = read_input(self.sources.paths[row])
        return encode_image(data, self.preset, "pixels", self.geometry, rng=rng,
                            max_pixels=self.max_pixels, lenient=self.lenient)  # fmt: skip

    def read_batch(
        self, indices: Sequence[int] | np.ndarray, seed: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Inputs ``indices`` as one batch dict; ``seed`` seeds the training draws (None:
        fresh entropy)."""
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        hb, wb = self.grid  # type: ignore[misc]
        cubes = np.empty((len(rows), len(self.channel_names), hb, wb), np.int16)
        base = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        for j, row in enumerate(rows):
            rng = np.random.default_rng([base, j]) if self.train else None
            cubes[j] = self.encode(int(row), rng)
        return {
            "cubes": torch.from_numpy(cubes),
            "labels": torch.from_numpy(self.labels[rows]),
            "indices": torch.from_numpy(rows.copy()),
        }

    def __getitem__(self, req: BatchRequest) -> dict[str, torch.Tensor]:
        return self.read_batch(req.indices, req.seed)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def make_jpeg_loader(
    src: str | Path | Sources | JpegDataset,
    *,
    batch_size: int,
    preset: str = "dctnet-24",
    geometry: str = "resnet",
    train: bool = True,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
    statistics: str | Any = "dctnet",
) -> StoreLoader:
    """Batches of inputs encoded on the fly, in freqdata's sampling order (module docstring):
    :func:`freqdata.make_loader` over a :class:`JpegDataset` (``loader.store_dataset``).

    ``num_workers``: decoding processes (0 = in this process); a batch is made by one worker.
    ``preset``/``geometry``/``train``/``statistics``: of the :class:`JpegDataset` (ignored
    when ``src`` is one).
    """
    ds = src if isinstance(src, JpegDataset) else JpegDataset(
        src, preset, geometry, train=train, statistics=statistics
    )  # fmt: skip
    return make_loader(ds, batch_size=batch_size, shuffle=shuffle, seed=seed,
                       drop_last=drop_last, rank=0, world_size=1, num_workers=num_workers,
                       threads=0, persistent_workers=False,
                       worker_init_fn=_one_thread if num_workers else None)  # fmt: skip
