"""Neural-network layers for frequency-domain models (torch required).

* :class:`FDConv` — Frequency Dynamic Convolution (Chen et al., CVPR 2025), a drop-in
  replacement for ``nn.Conv2d``; :func:`to_fdconv` swaps the eligible convolutions of a model.
"""

from freqdata.nn.fdconv import FDConv, fdconv_eligible, parameter_overhead, to_fdconv

__all__ = ["FDConv", "fdconv_eligible", "parameter_overhead", "to_fdconv"]
