"""Trainer models: registry, parameter counts, shapes, the channel gate, one optimisation step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from freqdata.presets import PRESETS, Preset
from freqdata.trainers import ChannelGate, create_model, get_gate, list_models
from freqdata.trainers.selection import (
    SelectionRates,
    draw_heatmap,
    rate_grids,
    save_preset,
    static_selection,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def count(name: str, **kw) -> int:
    """Parameters of a model built on the meta device (no memory, no initialisation cost)."""
    with torch.device("meta"):
        return n_params(create_model(name, **kw))


def names_of(preset: str) -> list[str]:
    p = PRESETS[preset]
    return [f"Y{k}" for k in p.y] + [f"Cb{k}" for k in p.cb] + [f"Cr{k}" for k in p.cr]


def gate_params(c: int) -> int:
    # 1x1 conv C->C (no bias) + BN (2C) + grouped 1x1 conv C->2C (2C weights + 2C biases)
    return c * c + 2 * c + 4 * c


def test_registry_and_errors():
    assert list_models() == ["mobilenetv2", "resnet18", "resnet50"]
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vgg16")
    with pytest.raises(ValueError, match="in_channels"):
        create_model("resnet18", input="dct")
    with pytest.raises(ValueError, match="input='dct'"):
        create_model("resnet18", input="rgb", gate=True)
    with pytest.raises(ValueError, match="3 input channels"):
        create_model("resnet18", input="rgb", in_channels=24)


# ------------------------------------------------------------------------ parameter counts
def test_standard_rgb_parameter_counts_match_torchvision():
    # torchvision resnet50(), mobilenet_v2(), resnet18() at 1000 classes
    assert count("resnet50", input="rgb", num_classes=1000) == 25_557_032
    assert count("mobilenetv2", input="rgb", num_classes=1000) == 3_504_872
    assert count("resnet18", input="rgb", width=64) == 11_689_512


@pytest.mark.parametrize("c", [24, 192])
def test_dct_parameter_counts(c):
    """DCT variants: the RGB count minus the stem, with the first block rewired to C inputs."""
    rn50 = 25_557_032 - (3 * 64 * 49 + 2 * 64)  # conv1 + bn1 dropped
    rn50 += (c - 64) * 64 + (c - 64) * 256  # layer1[0].conv1 and downsample take C inputs
    assert count("resnet50", input="dct", in_channels=c) == rn50
    assert count("resnet50", input="dct", in_channels=c, gate=True) == rn50 + gate_params(c)
    mb = 3_504_872 - (3 * 32 * 9 + 2 * 32)  # features[0] (conv 3x3 3->32 + BN) dropped
    mb += (c - 32) * 9 + 2 * (c - 32) + (c - 32) * 16  # depthwise + its BN + projection on C
    assert count("mobilenetv2", input="dct", in_channels=c) == mb
    assert count("mobilenetv2", input="dct", in_channels=c, gate=True) == mb + gate_params(c)
    # compact ResNet-18, width 32: stem dropped, layer1[0].conv1 takes C, plus a projection
    rn18_rgb = count("resnet18", input="rgb", num_classes=2)
    assert rn18_rgb == 2_799_394  # 3,055,880 at 1000 classes
    rn18 = rn18_rgb - (3 * 32 * 49 + 2 * 32) + (c - 32) * 32 * 9 + (c * 32 + 2 * 32)
    assert count("resnet18", input="dct", in_channels=c, num_classes=2) == rn18
    gated = count("resnet18", input="dct", in_channels=c, num_classes=2, gate=True)
    assert gated == rn18 + gate_params(c)


def test_documented_dct_counts():
    """The figures quoted in docs/trainers.md (1000 classes)."""
    table = {
        ("resnet50", 24, False): 25_534_696,
        ("resnet50", 192, True): 25_626_472,
        ("mobilenetv2", 24, False): 3_503_728,
        ("mobilenetv2", 192, True): 3_546_280,
        ("resnet18", 24, False): 3_049_640,
        ("resnet18", 192, True): 3_141_416,
    }
    for (name, c, gate), n in table.items():
        assert count(name, input="dct", in_channels=c, gate=gate) == n


# ------------------------------------------------------------------------ shapes
@pytest.mark.parametrize(
    ("name", "rgb", "dct", "feat"),
    [
        ("resnet50", 224, 56, (2048, 7, 7)),
        ("mobilenetv2", 224, 112, (1280, 7, 7)),
        ("resnet18", 224, 56, (256, 7, 7)),
    ],
)
def test_shapes_of_every_variant(name, rgb, dct, feat):
    """The paper's geometry: RGB 224 and DCT 56x56 (ResNet) / 112x112 (MobileNetV2) blocks
    give the same feature map; ``forward_features`` / ``forward_head`` split everywhere."""
    torch.manual_seed(0)
    variants = [
        (create_model(name, input="rgb", num_classes=5), torch.randn(1, 3, rgb, rgb)),
        (
            create_model(name, input="dct", in_channels=24, num_classes=5),
            torch.randn(1, 24, dct, dct),
        ),
        (
            create_model(name, input="dct", in_channels=24, num_classes=5, gate=True),
            torch.randn(1, 24, dct, dct),
        ),
    ]
    with torch.no_grad():
        for model, x in variants:
            model.eval()
            f = model.forward_features(x)
            assert tuple(f.shape) == (1, *feat)
            assert model.num_features == feat[0]
            assert tuple(model.forward_head(f).shape) == (1, 5)
            assert tuple(model.forward_head(f, pre_logits=True).shape) == (1, feat[0])
            assert torch.equal(model(x), model.forward_head(f))
    assert get_gate(variants[2][0]) is not None and get_gate(variants[1][0]) is None


def test_gate_on_192_channels_shapes():
    m = create_model("resnet18", input="dct", in_channels=192, num_classes=2, gate=True).eval()
    with torch.no_grad():
        assert tuple(m(torch.randn(2, 192, 16, 16)).shape) == (2, 2)
    assert tuple(get_gate(m).gates.shape) == (2, 192)


# ------------------------------------------------------------------------ the gate
def test_gate_is_hard_and_straight_through_gradient_is_nonzero():
    torch.manual_seed(0)
    gate = ChannelGate(8).train()
    x = torch.randn(4, 8, 5, 5, requires_grad=True)
    y = gate(x)
    g = gate.gates
    assert g.shape == (4, 8) and set(g.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(y, x * g[:, :, None, None])
    # the loss depends on the gates only through the 0/1 mask: the straight-through
    # estimator must still carry a gradient into the gate's parameters
    loss = y.square().mean() + 0.01 * gate.regularizer()
    loss.backward()
    for p in (gate.logits.weight, gate.logits.bias, gate.hidden[0].weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # the regularizer alone pushes the "on" logits down
    gate.zero_grad()
    gate(x.detach())
    gate.regularizer().backward()
    on_bias_grad = gate.logits.bias.grad.view(8, 2)[:, 1]
    assert (on_bias_grad > 0).all()


def test_gate_regularizer_form_and_eval_determinism():
    torch.manual_seed(1)
    gate = ChannelGate(6)
    x = torch.randn(3, 6, 4, 4)
    gate.train()
    gate(x)
    assert torch.allclose(gate.regularizer(), gate.gates.mean(0).sum())
    gate.eval()
    a = gate(x).clone()
    b = gate(x)
    assert torch.equal(a, b)
    logits = gate.gate_logits(x)
    assert torch.equal(gate.gates, (logits[..., 1] > logits[..., 0]).float())
    # initialisation: P(on) = sigmoid(3) ~ 0.95
    assert gate.gates.mean() > 0.8


# ------------------------------------------------------------------------ one optimisation step
@pytest.mark.parametrize(
    ("name", "inp", "c", "size", "gate", "lr"),
    [
        ("resnet18", "rgb", None, 64, False, 0.02),
        ("resnet18", "dct", 24, 8, False, 0.02),
        ("resnet18", "dct", 24, 8, True, 0.02),
        ("resnet50", "dct", 24, 16, False, 0.001),
        ("mobilenetv2", "dct", 24, 16, False, 0.2),
        ("mobilenetv2", "rgb", None, 64, False, 0.2),
    ],
)
def test_one_step_lowers_the_loss_on_a_fixed_batch(name, inp, c, size, gate, lr):
    torch.manual_seed(0)
    model = create_model(name, input=inp, in_channels=c, num_classes=4, gate=gate).train()
    x = torch.randn(8, c or 3, size, size)
    y = torch.arange(8) % 4
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def loss_now() -> torch.Tensor:
        torch.manual_seed(123)  # same dropout masks / Gumbel noise for both evaluations
        return F.cross_entropy(model(x), y)

    before = loss_now()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss_now()
    assert after < before


# ------------------------------------------------------------------------ selection, heat map
def test_rates_grid_static_selection_and_preset(tmp_path):
    names = names_of("dctnet-24")
    rates = SelectionRates(len(names))
    g = torch.zeros(4, len(names))
    g[:, :3] = 1  # Y0, Y1, Y2 always
    g[:2, 16] = 1  # Cb0 half the time
    rates.update(g)
    r = rates.rates
    assert rates.images == 4 and r[0] == 1 and r[16] == 0.5 and r[3] == 0
    grid = rate_grids(r, names)
    assert grid.shape == (3, 8, 8)
    assert grid[0, 0, 0] == 1 and grid[0, 0, 2] == 1 and grid[1, 0, 0] == 0.5
    assert np.isnan(grid[0, 7, 7]) and np.isnan(grid[2, 4, 4])  # not in dctnet-24
    sel = static_selection(r, names, threshold=0.5)
    assert sel == {"y": [0, 1, 2], "cb": [0], "cr": []}
    path = save_preset(sel, tmp_path / "p.json")
    loaded = json.loads(path.read_text())
    assert Preset(**loaded).channels == 4


def test_heatmap_png_is_written(tmp_path):
    names = names_of("all")
    k = np.arange(192)
    rates = np.where(k % 64 < 10, 1.0, np.where(k % 64 < 20, 0.5, 0.0))
    out = draw_heatmap(rates, names, tmp_path / "sub" / "heat.png", title="test")
    im = Image.open(out)
    assert im.format == "PNG" and im.width > 3 * 8 * 30 and im.height > 8 * 30
    px = np.asarray(im.convert("RGB"))
    # DC of Y (rate 1): yellow; Y63 (rate 0): dark purple (cell centres)
    top, left, cell = 20 + 18, 16, 30
    assert tuple(px[top + 4, left + 4]) == (253, 231, 37)
    assert tuple(px[top + 7 * cell + 4, left + 7 * cell + 4]) == (68, 1, 84)
    # a 24-channel store: absent channels drawn grey
    out24 = draw_heatmap(np.ones(24), names_of("dctnet-24"), tmp_path / "h24.png")
    px24 = np.asarray(Image.open(out24).convert("RGB"))
    assert tuple(px24[20 + 7 * cell + 2, left + 7 * cell + 10]) == (200, 200, 200)
