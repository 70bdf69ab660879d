"""``freqdata train masks``: instance-mask heads (grid | dctmask | patchdct) on stores."""

from __future__ import annotations


def masks_cmd() -> None:
    """Train an instance-mask head (not implemented yet)."""
    raise NotImplementedError
