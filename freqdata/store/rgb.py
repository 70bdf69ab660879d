"""RGB stores: the pixel baseline's images, written by the one store writer.

freqdata's image stores hold DCT cubes; the RGB arm of a comparison needs RGB images with
the *same* decode, orientation and geometry. :func:`encode_rgb` writes them with the pixel
path's own decoder: :func:`freqdata.pixels.load_ycbcr` (decode → EXIF orientation → resize
shorter side → centre crop, exactly what ``encode --path pixels --geometry S:C`` does) and
the inverse JFIF conversion (:func:`ycbcr_to_rgb`: libjpeg's own YCbCr → RGB equations), so
the two arms see the same pixels.

An RGB store is an image store of another kind (docs/store.md): format ``freqdata-rgb``,
one fixed part ``images`` ``(N, 3, H, W)`` uint8 (axes ``channel, y, x``), the same index
arrays, statistics (over all pixels, 0..255 scale), commit protocol, lock and resume as
:class:`~freqdata.store.StoreWriter` gives every store. :class:`RGBStore` reads it back (an
:class:`~freqdata.store.ImageStore` of this format), and :func:`freqdata.make_loader` serves it
like any image store (batches with ``images`` instead of ``cubes``, docs/loader.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from freqdata.errors import UsageError
from freqdata.limits import DEFAULT_MAX_BYTES
from freqdata.pixels import load_ycbcr, parse_geometry
from freqdata.sources import Sources, escape_name, list_sources, read_input
from freqdata.store.layout import SHARD_SAMPLES, exists
from freqdata.store.reader import ImageStore, read_rows
from freqdata.store.spec import Part, StoreSpec
from freqdata.store.writer import StoreWriter

RGB_FORMAT = "freqdata-rgb"
COLOUR = "RGB from JFIF YCbCr (freqdata.pixels.load_ycbcr), libjpeg's equations"


def ycbcr_to_rgb(planes: np.ndarray) -> np.ndarray:
    """JFIF full-range YCbCr ``(3, H, W)`` uint8 → RGB ``(3, H, W)`` uint8 (rounded, clipped):
    ``R = Y + 1.402 (Cr - 128)``, ``G = Y - 0.344136 (Cb - 128) - 0.714136 (Cr - 128)``,
    ``B = Y + 1.772 (Cb - 128)``."""
    y, cb, cr = (p.astype(np.float32) for p in planes)
    cb -= 128.0
    cr -= 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb])
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def rgb_spec(sources: Sources, geometry: str) -> StoreSpec:
    """The layout of the RGB store of ``sources`` at a crop ``geometry`` (``S:C``, ``resnet``,
    ``mobilenet``); :class:`UsageError` for a geometry without a crop."""
    geo = parse_geometry(geometry)
    if geo.crop is None:
        raise UsageError(f"RGB stores need a crop geometry (S:C), got {geometry!r}")
    c = geo.crop
    config = {"geometry": geo.name, "colour": COLOUR, "dtype": "uint8"}
    return StoreSpec(
        [Part("images", 3, (c, c))], config, ["R", "G", "B"], sources.class_names,
        sources.digest(), len(sources), format=RGB_FORMAT, dtype="uint8",
        axes=("channel", "y", "x"),
    )


def encode_rgb(
    src: str | Path | Sources,
    out: str | Path,
    geometry: str = "256:240",
    *,
    overwrite: bool = False,
    resume: bool = False,
    batch: int = SHARD_SAMPLES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """Write the RGB store ``out`` from a folder of class sub-folders (or a list file).

    ``geometry``: a crop geometry (``S:C``, ``resnet``, ``mobilenet``): every image becomes
    ``(3, C, C)`` uint8. Failing inputs are skipped and recorded (``errors``). ``batch``:
    inputs per commit; ``resume`` continues an interrupted store; inputs are checked and read
    as by the image encoder (:func:`freqdata.sources.read_input`: regular files of at most
    ``max_bytes``; names stored relative to SRC, escaped). Returns a summary
    ``{"out", "inputs", "encoded", "failed", "errors"}`` (this run's failures).
    """
    sources = src if isinstance(src, Sources) else list_sources(src)
    spec = rgb_spec(sources, geometry)
    if exists(out) and not (overwrite or resume):
        raise UsageError(f"{out} exists: pass overwrite=True to replace it")
    if resume and exists(out):
        writer = StoreWriter.resume(out, spec)
    else:
        writer = StoreWriter.create(out, spec, overwrite=overwrite)
    geo = parse_geometry(geometry)
    with writer:
        start, errors0 = writer.progress.inputs_done, len(writer.errors)
        items: list[tuple[int, str, int, Any]] = []
        for i in range(start, len(sources)):
            try:
                data = read_input(sources.paths[i], max_bytes)
                result: Any = (ycbcr_to_rgb(load_ycbcr(data, geo).planes),)
            except (ValueError, OSError) as e:  # one bad input must not stop the run
                result = escape_name(f"{type(e).__name__}: {e}")
            items.append((i, sources.names[i], sources.labels[i], result))
            if len(items) == batch or i == len(sources) - 1:
                writer.write_batch(items, i + 1)
                items = []
        writer.finish()
    errors = writer.errors[errors0:]
    return {"out": str(out), "inputs": len(sources), "encoded": writer.progress.samples,
            "failed": len(errors), "errors": errors}  # fmt: skip


def is_rgb_store(path: str | Path) -> bool:
    """True when ``path`` is a store written by :func:`encode_rgb`."""
    try:
        meta = json.loads((Path(path) / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("attributes", {}).get("freqdata", {}).get("format") == RGB_FORMAT


class RGBStore(ImageStore):
    """Read access to an RGB store: an :class:`~freqdata.store.ImageStore` of format
    :data:`RGB_FORMAT` (one fixed part ``images``; ``len()``, ``.labels``, ``.paths``,
    ``.mean`` / ``.std`` ``(3,)`` float64 on the 0..255 scale, ``.class_names``, ...), plus
    ``.grid`` ``(H, W)`` pixels and :meth:`read`. Opening anything else raises
    :class:`~freqdata.errors.StoreError`."""

    format = RGB_FORMAT
    kind = "freqdata RGB store (freqdata train rgb-store)"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.grid: tuple[int, int] = self.parts[0].grid  # type: ignore[assignment]

    def read(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Rows ``rows`` (B,) into ``out`` ``(B, 3, H, W)`` uint8 in one bulk read (direct
        shard reads; an absent or damaged chunk raises :class:`~freqdata.errors.StoreError`)."""
        if "images" not in self._readers:  # cached: it keeps the shard indices it has read
            self._readers["images"] = self.shard_reader("images")
        reader = self._readers["images"]
        if reader is not None:
            reader.read(np.asarray(rows, np.int64), list(out), len(self))
        else:
            out[...] = read_rows(self.group["images"], rows)
