"""``freqdata train semantic``: semantic segmentation on full or block-wise labels."""

from __future__ import annotations


def semantic_cmd() -> None:
    """Train a semantic-segmentation network (not implemented yet)."""
    raise NotImplementedError
