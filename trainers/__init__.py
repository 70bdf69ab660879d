"""Reference trainers (installed as ``freqdata.trainers``).

* :func:`create_model` (timm-style registry: ``resnet18`` (compact), ``resnet50``,
  ``mobilenetv2``; ``input="dct" | "rgb"``; ``gate=True`` for the dynamic channel gate);
* :mod:`freqdata.trainers.classify` — the classification trainer behind
  ``freqdata train classify`` (docs/trainers.md).
"""

from __future__ import annotations

from .gate import ChannelGate
from .registry import create_model, list_models, register_model

__all__ = ["ChannelGate", "create_model", "get_gate", "list_models", "register_model"]


def get_gate(model: object) -> ChannelGate | None:
    """The model's :class:`ChannelGate` (its ``stem``), or None."""
    stem = getattr(model, "stem", None)
    return stem if isinstance(stem, ChannelGate) else None
