"""``freqdata encode masks``: COCO instance masks → DCT-Mask / PatchDCT vectors in a store."""

from __future__ import annotations
