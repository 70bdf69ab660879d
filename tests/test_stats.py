"""Streaming statistics against numpy's two-pass float64 mean/std on real cubes."""

from __future__ import annotations

import numpy as np
from conftest import COCO_VAL

from freqdata.encode import encode_image
from freqdata.stats import ChannelStats


def test_merge_equals_two_pass_on_real_cubes(data_dir):
    cubes = [encode_image(p) for p in sorted(COCO_VAL.glob("*.jpg"))[:6]]
    flat = np.concatenate([c.reshape(c.shape[0], -1) for c in cubes], axis=1).astype(np.float64)
    # merge in two different groupings: sequential, and a tree (as workers would)
    seq = ChannelStats.empty(cubes[0].shape[0])
    for c in cubes:
        seq = seq.merge(ChannelStats.of(c))
    left = (
        ChannelStats.of(cubes[0]).merge(ChannelStats.of(cubes[1])).merge(ChannelStats.of(cubes[2]))
    )
    right = (
        ChannelStats.of(cubes[3]).merge(ChannelStats.of(cubes[4])).merge(ChannelStats.of(cubes[5]))
    )
    tree = right.merge(left)
    for s in (seq, tree):
        np.testing.assert_allclose(s.mean, flat.mean(axis=1), rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(s.std, flat.std(axis=1), rtol=1e-10)
        assert np.all(s.n == flat.shape[1])


def test_stable_with_large_offset():
    rng = np.random.default_rng(0)
    x = 1e8 + rng.normal(size=(2, 1000, 1))
    s = ChannelStats.of(x[:, :500]).merge(ChannelStats.of(x[:, 500:]))
    np.testing.assert_allclose(s.std, x.reshape(2, -1).std(axis=1), rtol=1e-6)


def test_empty_is_neutral():
    s = ChannelStats.of(np.arange(12.0).reshape(3, 2, 2))
    m = ChannelStats.empty(3).merge(s)
    np.testing.assert_allclose(m.mean, s.mean)
    np.testing.assert_allclose(m.m2, s.m2)
    assert np.all(ChannelStats.empty(3).std == 0)
