"""Channel presets: which DCT coefficients of Y, Cb and Cr a cube keeps.

``PRESETS[name]`` is a :class:`Preset`, a named tuple of three lists of natural indices
``8v+u`` (Y, Cb, Cr). The ``dctnet-*`` entries are DCTNet's static selections verbatim
(Xu et al., CVPR 2020; docs/conventions.md); ``all`` keeps 192 channels. ``zigzag-Y-C`` (for any
Y, C in 0..64) keeps the first Y luma and first C chroma coefficients in JPEG zigzag order
and is built by :func:`resolve_preset`. Channel order in a cube: Y list, then Cb, then Cr.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

from freqdata.dct import ZIGZAG
from freqdata.errors import UsageError


class Preset(NamedTuple):
    """Natural coefficient indices kept per component."""

    y: list[int]
    cb: list[int]
    cr: list[int]

    @property
    def channels(self) -> int:
        """Total number of channels C of the cube."""
        return len(self.y) + len(self.cb) + len(self.cr)


def _ranges(*spans: tuple[int, int]) -> list[int]:
    return [k for lo, hi in spans for k in range(lo, hi + 1)]


def _same_chroma(y: list[int], c: list[int]) -> Preset:
    return Preset(list(y), list(c), list(c))


PRESETS: dict[str, Preset] = {
    "dctnet-6": _same_chroma([0, 1, 8, 9], [0]),
    "dctnet-24": _same_chroma(
        [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27], [0, 1, 8, 9]
    ),
    "dctnet-32": _same_chroma(
        [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 16, 17, 18, 19, 20, 24, 25, 26, 27, 32, 33, 34],
        [0, 1, 2, 8, 9],
    ),
    "dctnet-48": _same_chroma(
        _ranges((0, 5), (8, 13), (16, 21), (24, 29), (32, 35), (40, 43)),
        [0, 1, 2, 8, 9, 10, 16, 17],
    ),
    "dctnet-64": _same_chroma(
        _ranges((0, 6), (8, 14), (16, 21), (24, 29), (32, 37), (40, 45), (48, 53)),
        [0, 1, 2, 8, 9, 10, 16, 17, 24, 25],
    ),
    "all": _same_chroma(list(range(64)), list(range(64))),
}

_ZIGZAG_NAME = re.compile(r"^zigzag-(\d+)-(\d+)$")


def load_preset(path: str | Path) -> Preset:
    """A preset saved as JSON ``{"y": [...], "cb": [...], "cr": [...]}`` (natural indices),
    e.g. the static selection the channel gate of ``freqdata train classify`` writes."""
    try:
        d = json.loads(Path(path).read_text())
        p = Preset(*(list(map(int, d[k])) for k in ("y", "cb", "cr")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"preset file {path}: {e}") from None
    if not p.y or any(not 0 <= k < 64 for k in p.y + p.cb + p.cr):
        raise UsageError(f"preset file {path}: needs luma channels and indices in 0..63")
    return p


def resolve_preset(name: str) -> Preset:
    """The :class:`Preset` for ``name``: a key of :data:`PRESETS`, ``zigzag-Y-C`` or the
    path of a preset JSON file (:func:`load_preset`).

    Raises :class:`freqdata.errors.UsageError` (a ``ValueError``) naming the valid choices
    for anything else.
    """
    if name in PRESETS:
        return PRESETS[name]
    if name.endswith(".json"):
        return load_preset(name)
    m = _ZIGZAG_NAME.match(name)
    if m:
        ny, nc = int(m.group(1)), int(m.group(2))
        if 1 <= ny <= 64 and 0 <= nc <= 64:
            return _same_chroma(ZIGZAG[:ny].tolist(), ZIGZAG[:nc].tolist())
    raise UsageError(
        f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}, zigzag-Y-C "
        "(1 <= Y <= 64, 0 <= C <= 64) or a preset .json file"
    )
