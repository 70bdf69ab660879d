"""Coefficient planes: a cube's channels of one component as one ``(8 Hb, 8 Wb)``-like matrix.

A separable linear map of the pixels of a component, ``P -> A_h P A_w^T``, is, on the block
DCT coefficients, ``X -> M_h X M_w^T`` where ``X`` is the *coefficient plane*: entry
``(Hb_i * |V| + v, Wb_j * |U| + u)`` holds coefficient ``(v, u)`` of block ``(i, j)``. Only the
vertical frequencies ``V`` and horizontal frequencies ``U`` that occur among the stored
channels of the component are kept (a stored set that is not a product ``V x U``, e.g.
``dctnet-32``'s, is completed with zeros: the unstored coefficients count as 0).

:func:`plane_groups` groups the components of a cube that share ``(V, U)`` (Cb and Cr in
every preset) so that they go through one batched matmul; :func:`to_planes` /
:func:`from_planes` convert between the cube ``(B, C, Hb, Wb)`` and the planes
``(B, n, Hb |V|, Wb |U|)`` of a group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from freqdata.dct import BLOCK
from freqdata.errors import UsageError
from freqdata.transforms import ChannelInfo, channel_info

__all__ = ["PlaneGroup", "as_channel_info", "from_planes", "plane_groups", "to_planes"]


class PlaneGroup(NamedTuple):
    """Components sharing the frequency sets ``v`` (vertical) and ``u`` (horizontal).

    ``components``: (n,) component ids (0 = Y, 1 = Cb, 2 = Cr); ``v``, ``u``: sorted
    frequencies; ``gather``: ``(n * |v| * |u|,)`` int64, the cube channel of each plane
    entry ``(component, v, u)`` in that order, ``C`` (one past the last channel) where the
    coefficient is not stored; ``channels``: the stored cube channels of the group and
    ``positions`` their entries in the ``(component, v, u)`` order.
    """

    components: tuple[int, ...]
    v: tuple[int, ...]
    u: tuple[int, ...]
    gather: torch.Tensor
    channels: torch.Tensor
    positions: torch.Tensor


def as_channel_info(channels: ChannelInfo | Sequence[str]) -> ChannelInfo:
    """A :class:`~freqdata.transforms.ChannelInfo` from itself or the store's channel names."""
    return channels if isinstance(channels, ChannelInfo) else channel_info(list(channels))


def plane_groups(channels: ChannelInfo | Sequence[str]) -> list[PlaneGroup]:
    """The plane groups of a cube's channels (components with equal ``(V, U)`` together)."""
    info = as_channel_info(channels)
    n_ch = len(info.k)
    keys: dict[tuple[tuple[int, ...], tuple[int, ...]], list[int]] = {}
    for comp in sorted(set(info.component.tolist())):
        ks = info.k[info.component == comp]
        vs, us = set((ks // BLOCK).tolist()), set((ks % BLOCK).tolist())
        key = (tuple(sorted(vs)), tuple(sorted(us)))
        keys.setdefault(key, []).append(comp)
    groups = []
    for (vs, us), comps in keys.items():
        gather = np.full((len(comps), len(vs), len(us)), n_ch, dtype=np.int64)
        for ci, comp in enumerate(comps):
            for ch in np.flatnonzero(info.component == comp):
                k = int(info.k[ch])
                gather[ci, vs.index(k // BLOCK), us.index(k % BLOCK)] = ch
        flat = gather.reshape(-1)
        pos = np.flatnonzero(flat < n_ch)
        groups.append(
            PlaneGroup(
                tuple(comps),
                vs,
                us,
                torch.as_tensor(flat),
                torch.as_tensor(flat[pos]),
                torch.as_tensor(pos),
            )
        )
    return groups


def to_planes(x: torch.Tensor, group: PlaneGroup) -> torch.Tensor:
    """Cube ``(B, C, Hb, Wb)`` → planes ``(B, n, Hb |V|, Wb |U|)`` (missing entries 0)."""
    b, c, hb, wb = x.shape
    if int(group.gather.max()) > c:
        raise UsageError(f"a cube of {c} channels does not hold this channel layout")
    padded = torch.cat([x, x.new_zeros((b, 1, hb, wb))], 1)
    n, nv, nu = len(group.components), len(group.v), len(group.u)
    z = padded[:, group.gather.to(x.device)].reshape(b, n, nv, nu, hb, wb)
    return z.permute(0, 1, 4, 2, 5, 3).reshape(b, n, hb * nv, wb * nu)


def from_planes(planes: torch.Tensor, group: PlaneGroup, out: torch.Tensor) -> None:
    """Write the stored channels of ``planes`` ``(B, n, Hb |V|, Wb |U|)`` into ``out``
    ``(B, C, Hb, Wb)`` (in place; the group's other entries are dropped)."""
    b, n, h, w = planes.shape
    nv, nu = len(group.v), len(group.u)
    z = planes.reshape(b, n, h // nv, nv, w // nu, nu).permute(0, 1, 3, 5, 2, 4)
    z = z.reshape(b, n * nv * nu, h // nv, w // nu)
    out[:, group.channels.to(out.device)] = z[:, group.positions.to(out.device)].to(out.dtype)
