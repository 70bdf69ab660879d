"""Reading stores back: :class:`StoreGroup` (what every sample store shares) and
:class:`ImageStore` / :func:`open_store` for image stores."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from freqdata.store.spec import FORMAT, Part, Progress


class StoreGroup:
    """What every freqdata sample store reads the same way (image stores, the trainers' RGB
    stores): the Zarr group, its ``freqdata`` attributes, ``len()``, :attr:`labels` ``(N,)``
    int64, :attr:`paths`, :attr:`mean` / :attr:`std` ``(C,)`` float64, :attr:`config`,
    :attr:`channel_names`, :attr:`class_names`, :attr:`errors`, :attr:`complete`."""

    format: str = FORMAT
    kind: str = "freqdata image store"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.group = zarr.open_group(self.path, mode="r", zarr_format=3)
        attrs = self.group.attrs.get("freqdata")
        if not attrs or attrs.get("format") != self.format:
            raise ValueError(f"{path} is not a {self.kind}")
        self.attrs: dict[str, Any] = attrs
        self.progress = Progress(**attrs["progress"])
        self._n = self.progress.samples
        self.labels: np.ndarray = self.group["labels"][: self._n]

    def __len__(self) -> int:
        return self._n

    @property
    def complete(self) -> bool:
        """False while an encode is running or was interrupted (resume it to finish)."""
        return self.progress.complete

    @property
    def config(self) -> dict[str, Any]:
        return self.attrs["config"]

    @property
    def channel_names(self) -> list[str]:
        return self.attrs["channel_names"]

    @property
    def class_names(self) -> list[str]:
        return self.attrs["class_names"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.attrs["errors"]

    @property
    def mean(self) -> np.ndarray:
        return self.group["stats"]["mean"][:]

    @property
    def std(self) -> np.ndarray:
        return self.group["stats"]["std"][:]

    @property
    def paths(self) -> np.ndarray:
        return self.group["paths"][: self._n]


class ImageStore(StoreGroup):
    """Read access to an image store: ``len(store)``, ``store[i]`` → ``(cube, label)``.

    ``cube`` is ``(C, Hb, Wb)`` int16 for full chroma, or ``(luma, chroma)`` for native.
    Stored values are raw coefficients; :attr:`mean` and :attr:`std` ``(C,)`` are the
    per-channel statistics to normalize with at load time.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.parts = [
            Part(p["name"], p["channels"], tuple(p["grid"]) if p["grid"] else None)
            for p in self.attrs["parts"]
        ]
        self._index = {
            p.name: (
                self.group[p.name]["offset"][: self._n],
                self.group[p.name]["shape"][: self._n],
            )
            for p in self.parts
            if p.grid is None
        }

    @property
    def layout(self) -> str:
        return self.attrs["layout"]

    def _part(self, part: Part, i: int) -> np.ndarray:
        if part.grid is not None:
            return self.group[part.name][i]
        offsets, shapes = self._index[part.name]
        shape = tuple(int(s) for s in shapes[i])
        start = int(offsets[i])
        return self.group[part.name]["data"][start : start + math.prod(shape)].reshape(shape)

    def cube(self, i: int) -> np.ndarray | tuple[np.ndarray, ...]:
        """The cube of sample ``i``."""
        if not -self._n <= i < self._n:
            raise IndexError(f"sample {i} out of range for a store of {self._n}")
        i %= self._n
        parts = tuple(self._part(p, i) for p in self.parts)
        return parts[0] if len(parts) == 1 else parts

    def __getitem__(self, i: int) -> tuple[np.ndarray | tuple[np.ndarray, ...], int]:
        return self.cube(i), int(self.labels[i])


def open_store(path: str | Path) -> ImageStore:
    """Open an image store for reading (see :class:`ImageStore`)."""
    return ImageStore(path)
