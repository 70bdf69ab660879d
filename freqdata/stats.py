"""Per-channel normalization statistics, streaming and mergeable (Chan et al. 1979).

Each image contributes its per-channel block count, mean and sum of squared deviations
(M2), all float64; two partial results merge exactly with the parallel-variance formula,
so workers, shards and resumed runs combine to the same numbers as one pass. The global
mean/std are over all blocks of all images (population std, ``ddof=0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ChannelStats:
    """Running per-channel count ``n``, ``mean`` and ``m2``, each ``(C,)`` float64."""

    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, channels: int) -> ChannelStats:
        """Statistics of nothing, for ``channels`` channels."""
        z = np.zeros(channels, dtype=np.float64)
        return cls(z.copy(), z.copy(), z.copy())

    @classmethod
    def of(cls, cube: np.ndarray) -> ChannelStats:
        """Statistics of one cube ``(C, Hb, Wb)`` (any numeric dtype)."""
        # contiguous first: the summation order (and so the last bits) must not depend on
        # the caller's memory layout, or stores would differ between workers and in-process
        x = np.ascontiguousarray(cube).reshape(cube.shape[0], -1).astype(np.float64)
        mean = x.mean(axis=1)
        m2 = ((x - mean[:, None]) ** 2).sum(axis=1)
        return cls(np.full(x.shape[0], float(x.shape[1])), mean, m2)

    @classmethod
    def join(cls, parts: list[ChannelStats]) -> ChannelStats:
        """Channel-wise concatenation: the statistics of a cube split into parts (e.g. luma
        and native-resolution chroma, each channel over its own blocks)."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("n", "mean", "m2")))

    def merge(self, other: ChannelStats) -> ChannelStats:
        """The statistics of both sets together (a new object)."""
        n = self.n + other.n
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(n > 0, other.n / n, 0.0)
        delta = other.mean - self.mean
        mean = self.mean + delta * w
        m2 = self.m2 + other.m2 + delta**2 * self.n * w
        return ChannelStats(n, mean, m2)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per channel, (C,) float64 (0 where n == 0)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, np.sqrt(self.m2 / np.maximum(self.n, 1)), 0.0)
