"""RandAugment / TrivialAugmentWide on DCT batches: torchvision's draws, exact per-sample ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from augment_data import ALL_NAMES, full_batch

from freqdata.augment import (
    RandAugment,
    TrivialAugmentWide,
    adjust_colour,
    sharpen,
    translate_blocks,
)
from freqdata.augment.policy import DEFAULT_OPS, EXTRA_OPS, apply_ops
from freqdata.errors import UsageError

SIGNED = {"Brightness", "Color", "Contrast", "Sharpness", "TranslateX", "TranslateY"}


def tv_space(name, bins, hw, wide):
    """torchvision's ``_augmentation_space`` entries for our ops (bins, signed)."""
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return torch.linspace(0.0, 0.99 if wide else 0.9, bins), True
    if name == "TranslateX":
        return torch.linspace(0.0, 32.0 if wide else 150.0 / 331.0 * hw[1], bins), True
    if name == "TranslateY":
        return torch.linspace(0.0, 32.0 if wide else 150.0 / 331.0 * hw[0], bins), True
    return torch.tensor(0.0), False


def tv_randaugment_draws(ops, num_ops, magnitude, bins, hw):
    """torchvision RandAugment.forward's draws, verbatim (global RNG)."""
    out = []
    for _ in range(num_ops):
        op_index = int(torch.randint(len(ops), (1,)).item())
        magnitudes, signed = tv_space(ops[op_index], bins, hw, False)
        mag = float(magnitudes[magnitude].item()) if magnitudes.ndim > 0 else 0.0
        if signed and torch.randint(2, (1,)):
            mag *= -1.0
        out.append((ops[op_index], mag))
    return out


def tv_trivial_draws(ops, bins, hw):
    """torchvision TrivialAugmentWide.forward's draws, verbatim (global RNG)."""
    op_index = int(torch.randint(len(ops), (1,)).item())
    magnitudes, signed = tv_space(ops[op_index], bins, hw, True)
    mag = (
        float(magnitudes[torch.randint(len(magnitudes), (1,), dtype=torch.long)].item())
        if magnitudes.ndim > 0
        else 0.0
    )
    if signed and torch.randint(2, (1,)):
        mag *= -1.0
    return [(ops[op_index], mag)]


def _with_global_seed(seed, fn):
    state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        return fn()
    finally:
        torch.set_rng_state(state)


def test_draws_equal_torchvision():
    hw = (448, 448)
    ra = RandAugment(ALL_NAMES, num_ops=2, magnitude=9, seed=11)
    got = ra.draw(300, hw)
    ref = _with_global_seed(11, lambda: [tv_randaugment_draws(DEFAULT_OPS, 2, 9, 31, hw)
                                         for _ in range(300)])  # fmt: skip
    assert got == ref
    assert {op for d in got for op, _ in d} == set(DEFAULT_OPS)
    ta = TrivialAugmentWide(ALL_NAMES, seed=12)
    got = ta.draw(300, hw)
    ref = _with_global_seed(12, lambda: [tv_trivial_draws(DEFAULT_OPS, 31, hw)
                                         for _ in range(300)])  # fmt: skip
    assert got == ref


@pytest.fixture(scope="module")
def batch(data_dir):
    return full_batch(8, grid=(16, 16))


def _one(x, name, m):
    """One op on one sample with the single-purpose functions."""
    if name in ("Brightness", "Contrast", "Color"):
        key = {"Brightness": "brightness", "Contrast": "contrast", "Color": "saturation"}[name]
        return adjust_colour(x, ALL_NAMES, **{key: 1.0 + m})
    if name == "Sharpness":
        return sharpen(x, ALL_NAMES, 1.0 + m)
    if name in ("TranslateX", "TranslateY"):
        b = round(m / 8)
        dy, dx = b * (name == "TranslateY"), b * (name == "TranslateX")
        return translate_blocks(x, ALL_NAMES, dy, dx, fill=0.0)
    return x


@pytest.mark.parametrize("policy", [RandAugment, TrivialAugmentWide])
def test_batched_policy_equals_per_sample_ops(batch, policy):
    x = torch.as_tensor(batch)
    out, drawn = policy(ALL_NAMES, seed=3)(x)
    assert out.shape == x.shape
    for i, ops in enumerate(drawn):
        ref = x[i : i + 1]
        for name, m in ops:
            ref = _one(ref, name, m)
        np.testing.assert_allclose(out[i].numpy(), ref[0].numpy(), atol=1e-9)
    assert float((out - x).abs().amax()) > 10


def test_extra_ops_and_errors(batch):
    x = torch.as_tensor(batch[:3])
    out = apply_ops(x, ALL_NAMES, ["HFlip", "VFlip", "Rotate90"], torch.tensor([0.0, 0.0, -1.0]))
    assert out.shape == x.shape
    out, drawn = RandAugment(ALL_NAMES, ops=DEFAULT_OPS + EXTRA_OPS, seed=0)(x)
    assert len(drawn) == 3
    with pytest.raises(UsageError):
        RandAugment(ALL_NAMES, ops=("Posterize",))
    with pytest.raises(UsageError):
        RandAugment(ALL_NAMES, magnitude=31)
