"""Model registry and factory (timm-style): ``create_model(name, *, input, in_channels, ...)``.

Every model file registers its constructors with :func:`register_model`; the factory looks
them up by name. All registered models share one interface (``forward_features`` → feature
map, ``forward_head`` → logits, ``forward`` = both), and their RGB and DCT variants differ
only in their stem (see :mod:`freqdata.trainers.resnet`, :mod:`freqdata.trainers.mobilenetv2`)::

    from freqdata.trainers import create_model
    net = create_model("resnet50", input="dct", in_channels=24, num_classes=1000)
    net = create_model("resnet18", input="rgb", num_classes=2)           # compact, width 32
    net = create_model("mobilenetv2", input="dct", in_channels=192, gate=True)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Literal

from torch import nn

from freqdata.errors import UsageError

__all__ = ["INPUTS", "create_model", "list_models", "register_model"]

INPUTS = ("dct", "rgb")
_MODELS: dict[str, Callable[..., nn.Module]] = {}
_MODEL_FILES = ("resnet", "mobilenetv2")  # imported on first use (they register themselves)


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` (``fn(**kw) -> nn.Module``) under its ``__name__``."""
    if fn.__name__ in _MODELS:
        raise UsageError(f"model {fn.__name__!r} registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def _load() -> None:
    for m in _MODEL_FILES:
        importlib.import_module(f"{__package__}.{m}")


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _load()
    return sorted(_MODELS)


def create_model(
    name: str,
    *,
    input: Literal["dct", "rgb"] = "dct",
    in_channels: int | None = None,
    num_classes: int = 1000,
    gate: bool = False,
    **kw: Any,
) -> nn.Module:
    """Build a registered model.

    ``input="rgb"``: the standard network on ``(B, 3, H, W)`` float images (``in_channels``
    must be None or 3). ``input="dct"``: the "Learning in the Frequency Domain" variant on
    ``(B, C, Hb, Wb)`` normalized DCT cubes, ``C = in_channels`` (required). ``gate=True``
    (DCT only) puts the dynamic channel gate (:class:`freqdata.trainers.gate.ChannelGate`)
    in front. Other keywords go to the model (``width``, ``gate_hidden``, ``gate_tau`` ...).
    """
    _load()
    if name not in _MODELS:
        raise UsageError(f"unknown model {name!r}: choose one of {', '.join(sorted(_MODELS))}")
    if input not in INPUTS:
        raise UsageError(f"input must be one of {', '.join(INPUTS)}, got {input!r}")
    if input == "rgb":
        if in_channels not in (None, 3):
            raise UsageError(f"RGB models take 3 input channels, got in_channels={in_channels}")
        if gate:
            raise UsageError("the channel gate selects DCT frequency channels: use input='dct'")
        in_channels = 3
    elif in_channels is None or in_channels < 1:
        raise UsageError("DCT models need in_channels (the store's channel count C)")
    return _MODELS[name](
        input=input, in_channels=in_channels, num_classes=num_classes, gate=gate, **kw
    )
