"""The dynamic channel gate of "Learning in the Frequency Domain" (Xu et al., CVPR 2020, §3.3).

For an input cube ``x`` ``(B, C, H, W)`` (normalized DCT coefficients, C = 192 for the
paper's preset ``all``; any C works):

1. global average pool → ``(B, C, 1, 1)``;
2. 1x1 conv ``C → C`` + BatchNorm + ReLU (the paper's "Tensor 3");
3. grouped 1x1 conv ``C → 2C`` with ``groups=C``: two logits ``(off, on)`` per channel,
   each from its own hidden unit ("Tensor 4", ``(B, C, 2)``);
4. training: hard Gumbel-softmax over the two logits (temperature ``tau``) with the
   straight-through estimator — forward values are exactly 0/1, gradients are those of the
   soft sample; evaluation: the deterministic decision ``on > off`` (no noise);
5. ``y = x * g[:, :, None, None]`` with the gate ``g`` ``(B, C)`` in {0, 1}.

The regularizer (the paper's ``λ · Σ gates``), in the exact form used here:
``R = λ · Σ_c mean_b g[b, c]`` — the expected number of channels an image keeps, times λ
(:meth:`ChannelGate.regularizer` returns the sum without λ). It is differentiable through
the straight-through gates.

The "on" logit's bias starts at ``init_on`` (3.0: ``P(on) = 0.95``) so that training starts
from (almost) all channels and the regularizer switches channels off; the paper does not
state its initialisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelGate"]


class ChannelGate(nn.Module):
    """Per-image 0/1 mask over the C input channels (module docstring).

    ``forward(x)`` ``(B, C, H, W)`` float → same shape and dtype, channels masked. The last
    gates are kept in :attr:`gates` ``(B, C)`` (0/1 values; with the straight-through
    gradient in training) for the regularizer and for selection statistics.
    """

    def __init__(self, channels: int, *, tau: float = 1.0, init_on: float = 3.0) -> None:
        super().__init__()
        self.channels = channels
        self.tau = tau
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.logits = nn.Conv2d(channels, 2 * channels, 1, groups=channels, bias=True)
        with torch.no_grad():
            self.logits.bias.view(channels, 2)[:, 0] = 0.0
            self.logits.bias.view(channels, 2)[:, 1] = init_on
        self.gates: torch.Tensor | None = None

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C, 2)`` float32 logits ``(off, on)`` per channel."""
        z = self.logits(self.hidden(self.pool(x)))  # (B, 2C, 1, 1), group c → [2c, 2c+1]
        return z.flatten(1).view(x.shape[0], self.channels, 2).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.gate_logits(x)
        if self.training:
            g = F.gumbel_softmax(logits, tau=self.tau, hard=True, dim=-1)[..., 1]
        else:
            g = (logits[..., 1] > logits[..., 0]).to(logits.dtype)
        self.gates = g
        return x * g.to(x.dtype)[:, :, None, None]

    def regularizer(self) -> torch.Tensor:
        """``Σ_c mean_b g[b, c]`` of the last forward (a scalar; multiply by λ)."""
        if self.gates is None:
            raise RuntimeError("no forward pass yet")
        return self.gates.mean(0).sum()

    def extra_repr(self) -> str:
        return f"channels={self.channels}, tau={self.tau}"
