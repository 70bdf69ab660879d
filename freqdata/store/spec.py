"""What fixes a store's layout and what has been committed: :class:`Part`, :class:`StoreSpec`,
:class:`Progress`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORMAT = "freqdata-images"
FORMAT_VERSION = 2  # 2: crc32c per chunk, every chunk stored (docs/store.md)


@dataclass
class Progress:
    """What has been committed: inputs consumed, samples written, finished or not."""

    inputs_done: int = 0
    samples: int = 0
    complete: bool = False


@dataclass
class Part:
    """One stored tensor per sample: ``channels`` and, for the fixed layout, its grid."""

    name: str
    channels: int
    grid: tuple[int, int] | None = None  # (Hb, Wb) for fixed, None for ragged


@dataclass
class StoreSpec:
    """Everything that fixes a store's layout, recorded in its attributes.

    ``format``: the store kind (:data:`FORMAT` for DCT image stores, ``freqdata-rgb`` for
    :mod:`freqdata.store.rgb`); ``dtype``: the numpy dtype of every part's values;
    ``axes``: the names of a fixed part's axes after ``sample`` (Zarr dimension names).
    """

    parts: list[Part]
    config: dict[str, Any]
    channel_names: list[str]
    class_names: list[str] = field(default_factory=list)
    inputs_digest: str = ""
    inputs_count: int = 0
    format: str = FORMAT
    dtype: str = "int16"
    axes: tuple[str, str, str] = ("channel", "block_y", "block_x")

    @property
    def layout(self) -> str:
        return "fixed" if self.parts[0].grid is not None else "ragged"

    @property
    def channels(self) -> int:
        return sum(p.channels for p in self.parts)

    def attrs(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "format_version": FORMAT_VERSION,
            "layout": self.layout,
            "parts": [
                {"name": p.name, "channels": p.channels, "grid": list(p.grid) if p.grid else None}
                for p in self.parts
            ],
            "config": self.config,
            "channel_names": self.channel_names,
            "class_names": self.class_names,
            "inputs": {"count": self.inputs_count, "sha256": self.inputs_digest},
        }
