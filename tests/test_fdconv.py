"""FDConv (freqdata.nn.fdconv) against independent references: the Fourier disjoint
weight against numpy FFTs and a loop-built radius grouping, the band split against full
numpy FFTs with loop-built masks, the attentions against per-sample F.conv2d, neutral
attentions against F.conv2d of the converted weight (float64), the fallback rule, the
parameter count against hand-computed formulas, and ``freqdata train classify --conv
fdconv`` end to end."""

from __future__ import annotations

import copy
from fractions import Fraction
from itertools import pairwise

import numpy as np
import pytest
import test_trainers_classify as classify_tests
import torch
import torch.nn.functional as F
from test_trainers_classify import _classify, _lines
from torch import nn

from freqdata.nn import FDConv, fdconv_eligible, parameter_overhead, to_fdconv
from freqdata.nn.fdconv import FrequencyBandModulation, frequency_groups
from freqdata.trainers import create_model

# the classification tests' fixture: tiny real ants/bees stores
stores = classify_tests.stores
pytestmark = pytest.mark.usefixtures("one_torch_thread")

HEADS = ("ksm_global.heads", "ksm_local.weight", "fbm.maps")  # the attention outputs


def _set_heads(m: nn.Module, std: float, seed: int = 0) -> nn.Module:
    """Attention-head parameters (in every FDConv of ``m``) → 0 (std=0: every attention
    exactly 1, FBM the identity) or N(0, std)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if any(h in name for h in HEADS):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return m


def _conv(*args, seed: int = 0, **kw) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(*args, **kw).double()
    with torch.no_grad():  # a bias that matters
        if conv.bias is not None:
            conv.bias.normal_()
    return conv


def _x(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------- Fourier disjoint weight
def _groups_loop(rows: int, cols: int, n: int) -> np.ndarray:
    """Reference grouping: every rfft2 bin with its exact squared radius (a common
    denominator), sorted with row-major tie-break, cut into n near-equal runs."""
    bins = []
    for r in range(rows):
        fy = r if r < (rows + 1) // 2 else r - rows  # numpy fftfreq · rows
        for c in range(cols // 2 + 1):
            bins.append(((fy * cols) ** 2 + (c * rows) ** 2, r, c))
    bins.sort()
    out = np.empty((rows, cols // 2 + 1), np.int64)
    for rank, (_, r, c) in enumerate(bins):
        out[r, c] = rank * n // len(bins)
    return out


@pytest.mark.parametrize(("rows", "cols", "n"), [(6, 9, 4), (8, 8, 3), (15, 21, 7), (5, 4, 1)])
def test_frequency_groups_match_loop_reference(rows, cols, n):
    g = frequency_groups(rows, cols, n).numpy()
    np.testing.assert_array_equal(g, _groups_loop(rows, cols, n))
    sizes = np.bincount(g.ravel(), minlength=n)
    assert sizes.max() - sizes.min() <= 1 and g[0, 0] == 0
    # radius grows with the group: every bin of group g is no farther out than group g+1's
    fy, fx = np.fft.fftfreq(rows), np.fft.rfftfreq(cols)
    rad = np.hypot(fy[:, None], fx[None, :])
    for k in range(n - 1):
        assert rad[g == k].max() <= rad[g == k + 1].min() + 1e-12
    with pytest.raises(ValueError, match="kernel_num"):
        frequency_groups(2, 2, 5)


@pytest.mark.parametrize(("cin", "cout", "k"), [(20, 24, 3), (18, 17, 1), (7, 5, (1, 3))])
def test_fourier_disjoint_weight_is_a_partition_of_the_kernel(cin, cout, k):
    conv = _conv(cin, cout, k)
    m = FDConv.from_conv(conv, kernel_num=5)
    w = conv.weight.detach().numpy()
    co, ci, kh, kw = w.shape
    mat = w.transpose(0, 2, 1, 3).reshape(co * kh, ci * kw)  # rows o·kh+u, columns i·kw+v
    spec = np.fft.rfft2(mat, norm="ortho")
    got = m.spectrum.detach().numpy()
    np.testing.assert_allclose(got[..., 0] + 1j * got[..., 1], spec, atol=1e-12)
    groups = _groups_loop(co * kh, ci * kw, 5)
    ref = np.stack([
        np.fft.irfft2(spec * (groups == g), s=mat.shape, norm="ortho")
        .reshape(co, kh, ci, kw).transpose(0, 2, 1, 3)
        for g in range(5)
    ])  # fmt: skip
    gw = m.group_weights().detach().numpy()
    np.testing.assert_allclose(gw, ref, atol=1e-12)
    assert all(np.abs(gw[g]).max() > 0 for g in range(5))  # every group carries a part
    np.testing.assert_allclose(gw.sum(0), w, atol=1e-12)  # disjoint groups: a partition
    np.testing.assert_allclose(m.weight.detach().numpy(), w, atol=1e-12)


# ----------------------------------------------------------------- drop-in behaviour
CONFIGS = [  # in, out, kernel, stride, padding, dilation, bias, H, W
    (20, 24, 3, 1, 1, 1, True, 9, 11),
    (20, 24, 3, 2, 1, 1, False, 10, 7),
    (20, 24, 3, 1, 0, 1, True, 8, 8),
    (20, 24, 1, 1, 0, 1, True, 8, 9),
    (20, 24, 1, 2, 0, 1, False, 9, 9),
    (17, 18, 3, 1, 2, 2, True, 12, 13),
    (18, 17, 3, 1, "same", 1, True, 7, 6),
    (20, 20, (1, 3), (2, 1), (0, 1), 1, True, 5, 8),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(map(str, c)))
def test_neutral_attentions_reproduce_conv2d_shape_and_values(cfg):
    cin, cout, k, s, p, d, bias, h, w = cfg
    conv = _conv(cin, cout, k, s, p, d, bias=bias)
    m = _set_heads(FDConv.from_conv(conv), 0.0)
    assert (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
            m.groups) == (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, conv.dilation, 1)  # fmt: skip
    assert (m.bias is None) == (conv.bias is None)
    assert (m.fbm is not None) == (conv.kernel_size == (3, 3))
    x = _x(3, cin, h, w)
    with torch.no_grad():
        ref = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)
    for mode in (True, False):  # training (batch statistics) and evaluation
        y = m.train(mode)(x)
        assert y.shape == ref.shape == conv(x).shape
        torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    # neutral init, heads at N(0, 1e-6): the converted layer computes its conv almost exactly
    fresh = FDConv.from_conv(conv, init="neutral").eval()
    torch.testing.assert_close(fresh(x).detach(), ref, rtol=0, atol=1e-4 * float(ref.abs().max()))


def test_attentions_compose_as_documented():
    """W_b = α_f[o] α_c[i] α_s[u,v] α_l[o,i,u,v] Σ_g a_g W_g, per sample, on FBM(x)."""
    conv = _conv(20, 24, 3, 1, 1)
    m = _set_heads(FDConv.from_conv(conv, kernel_num=3), 0.3).eval()
    x = _x(5, 20, 9, 11)
    with torch.no_grad():
        y = m(x)
        att = m.attentions(x)
        gw, xf = m.group_weights(), m.fbm(x)
    assert att["local"].shape == (5, 24, 20, 3, 3) and att["spatial"].shape == (5, 3, 3)
    for a in att.values():
        assert float(a.min()) > 0 and float(a.max()) < 2 and float(a.std()) > 0.01
    ref = []
    for b in range(5):
        wb = torch.einsum("n,noiuv->oiuv", att["kernel"][b], gw) * att["spatial"][b]
        wb = wb * att["local"][b] * att["filter"][b][:, None, None, None]
        wb = wb * att["channel"][b][None, :, None, None]
        ref.append(F.conv2d(xf[b : b + 1], wb, m.bias, padding=1))
    torch.testing.assert_close(y, torch.cat(ref), rtol=0, atol=1e-12)
    # batch of 5 ≥ 3 groups: group kernels then a weighted sum; one sample: per-sample iFFT
    with torch.no_grad():
        single = torch.cat([m(x[b : b + 1]) for b in range(5)])
    torch.testing.assert_close(single, y, rtol=0, atol=1e-12)


def test_official_and_neutral_init():
    torch.manual_seed(0)
    cout = 48
    off = FDConv(32, cout, 3, padding=1, kernel_num=4)  # default: the official init
    neu = FDConv(32, cout, 3, padding=1, kernel_num=4, init="neutral")
    assert off.init == "official" and neu.init == "neutral"
    heads = off.ksm_global.heads
    # filter head: Kaiming normal, fan-out (= cout rows of the Linear), ReLU gain: sqrt(2/cout)
    std = float(heads["filter"].weight.detach().std())
    assert abs(std / (2 / cout) ** 0.5 - 1) < 0.1, std
    assert float(heads["filter"].bias.detach().abs().max()) == 0.0
    for name in ("channel", "spatial", "kernel"):
        assert float(heads[name].weight.detach().abs().max()) < 1e-5, name
    assert (off.ksm_local.weight.detach() == 1e-6).all()  # the official constant
    local = neu.ksm_local.weight.detach()
    assert float(local.std()) < 2e-6 and local.unique().numel() > 1
    assert float(neu.ksm_global.heads["filter"].weight.detach().abs().max()) < 1e-5
    x = torch.relu(torch.randn(4, 32, 12, 12))  # post-ReLU features (non-zero channel means)
    conv = _conv(32, cout, 3, 1, 1).float()
    for m in (off, neu):
        m.load_conv_weight(conv.weight.detach(), conv.bias.detach())
        m.eval()
    with torch.no_grad():
        ref = conv(x)
        filt = off.attentions(x)["filter"]
        rel_off = float((off(x) - ref).norm() / ref.norm())
        rel_neu = float((neu(x) - ref).norm() / ref.norm())
    # official: a fresh layer is not neutral (measured here: filter attention 0.37..1.44,
    # output 20 % off the conv); neutral: the conv up to ~1e-6
    assert float(filt.min()) < 0.7 and float(filt.max()) > 1.3, (filt.min(), filt.max())
    assert rel_off > 0.05, rel_off
    assert rel_neu < 1e-4, rel_neu
    with pytest.raises(ValueError, match="init"):
        FDConv(32, cout, 3, init="zero")


def test_ksm_local_is_a_1d_conv_along_channels():
    m = _set_heads(FDConv(16, 12, 3, kernel_num=2).double(), 0.5)
    loc = m.ksm_local
    assert loc.taps == 3  # round(log2(16)/2 + 0.5) // 2 * 2 + 1
    pooled = _x(4, 16)
    z = F.conv1d(loc.norm(pooled)[:, None], loc.weight[:, None], padding=loc.taps // 2)
    ref = z.reshape(4, 12, 3, 3, 16).permute(0, 1, 4, 2, 3)  # (B, cout, cin, kh, kw)
    torch.testing.assert_close(loc(pooled), ref, rtol=0, atol=1e-12)
    assert FDConv(64, 8, 1).ksm_local.taps == 5 and FDConv(32, 8, 1).ksm_local.taps == 3


# ----------------------------------------------------------------- frequency band modulation
def _keeps_boundary(k: int) -> bool:
    """Whether the official test ``f < 0.5/k + 1e-8``, evaluated in float32, keeps the bins
    at exactly ``f = 0.5/k``: only if the 1e-8 survives rounding the threshold to float32
    (it does not for k = 2: half an ulp of 0.25 is 1.49e-8)."""
    return bool(np.float32(0.5 / k + 1e-8) > np.float32(0.5 / k))


def _official_mask(h: int, w: int, k: int) -> np.ndarray:
    """``(h, w)`` full-FFT mask, cell by cell with exact rational frequencies: keep
    ``max(|fy|, |fx|) < 0.5/k``, or ``<=`` where the official float32 test keeps the
    boundary (:func:`_keeps_boundary`)."""
    cut, closed = Fraction(1, 2 * k), _keeps_boundary(k)
    mask = np.zeros((h, w))
    for r in range(h):
        for c in range(w):
            f = max(Fraction(min(r, h - r), h), Fraction(min(c, w - c), w))
            mask[r, c] = f <= cut if closed else f < cut
    return mask


def _bands_numpy(x: np.ndarray, ks: tuple[int, ...]) -> list[np.ndarray]:
    """Full complex FFT with :func:`_official_mask` low-passes."""
    h, w = x.shape[-2:]
    spec = np.fft.fft2(x)
    levels = [x]
    for k in ks:
        levels.append(np.fft.ifft2(spec * _official_mask(h, w, k)).real)
    return [a - b for a, b in pairwise(levels)] + [levels[-1]]


def test_fbm_masks_are_the_official_float32_test():
    assert [_keeps_boundary(k) for k in (2, 4, 8)] == [False, True, True]
    got = FrequencyBandModulation(4).masks(64, 64).numpy()
    for j, k in enumerate((2, 4, 8)):
        np.testing.assert_array_equal(got[j], _official_mask(64, 64, k)[:, :33] > 0)
    # the k = 2 band is strictly inside 0.25: the 65 bins of the rfft grid with
    # max(|fy|, fx) = 0.25 (rows 16 and 48, columns 0..16: 34; column 16, other rows: 31)
    # are excluded; a "<=" test would keep them
    fy = np.abs(np.fft.fftfreq(64))[:, None]
    fx = np.fft.rfftfreq(64)[None, :]
    closed = np.maximum(fy, fx) <= 0.25
    assert int((closed & ~got[0]).sum()) == 65 and not (got[0] & ~closed).any()
    # odd and non-power-of-two sizes follow the same rule
    for h, w in [(12, 20), (7, 10), (24, 9)]:
        got = FrequencyBandModulation(4).masks(h, w).numpy()
        for j, k in enumerate((2, 4, 8)):
            np.testing.assert_array_equal(got[j], _official_mask(h, w, k)[:, : w // 2 + 1] > 0)


@pytest.mark.parametrize(("h", "w"), [(8, 8), (7, 10), (16, 5), (12, 12)])
def test_fbm_bands_against_numpy(h, w):
    fbm = FrequencyBandModulation(6).double()
    x = _x(2, 6, h, w)
    ref = _bands_numpy(x.numpy(), (2, 4, 8))
    got = fbm.split(x)
    assert len(got) == 4
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-12)
    np.testing.assert_allclose(sum(g.numpy() for g in got), x.numpy(), atol=1e-12)
    with torch.no_grad():  # unit maps: the identity
        fbm.maps.weight.zero_()
        fbm.maps.bias.zero_()
    torch.testing.assert_close(fbm(x), x, rtol=0, atol=1e-12)
    with torch.no_grad():  # constant maps 2·sigmoid(bias_j) on bands 0..2, the low band as is
        fbm.maps.bias.copy_(torch.tensor([1.0, -0.5, 2.0]))
    c = 2 / (1 + np.exp(-np.array([1.0, -0.5, 2.0])))
    expect = c[0] * ref[0] + c[1] * ref[1] + c[2] * ref[2] + ref[3]
    np.testing.assert_allclose(fbm(x).detach().numpy(), expect, atol=1e-12)
    with pytest.raises(ValueError, match="increasing"):
        FrequencyBandModulation(6, (4, 2))


# ----------------------------------------------------------------- training
@pytest.mark.parametrize(("k", "n", "local"), [(3, 4, True), (1, 1, True), (3, 2, False)])
def test_gradients_reach_every_parameter(k, n, local):
    m = _set_heads(FDConv(20, 24, k, padding=k // 2, kernel_num=n, ksm_local=local), 0.3)
    y = m.train()(torch.randn(3, 20, 9, 9))
    (y * torch.randn_like(y)).sum().backward()
    names = [name for name, _ in m.named_parameters()]
    assert ("ksm_global.heads.spatial.weight" in names) == (k == 3)
    assert ("ksm_global.heads.kernel.weight" in names) == (n > 1)
    assert ("ksm_local.weight" in names) == local
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().max()) > 0, name


def test_bf16_autocast_and_channels_last():
    m = FDConv(20, 24, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 20, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.shape == (2, 24, 8, 8) and torch.isfinite(y.float()).all()
    torch.testing.assert_close(y.float(), m(x), rtol=0.05, atol=0.05)


# ----------------------------------------------------------------- conversion and fallback
class _Subclass(nn.Conv2d):
    pass


def test_fallback_rule_keeps_plain_convs():
    net = nn.ModuleDict({
        "ok3": nn.Conv2d(32, 32, 3, padding=1),
        "ok1": nn.Conv2d(17, 64, 1),
        "stem": nn.Conv2d(3, 32, 7, 2, 3),  # 3 channels, kernel 7
        "k5": nn.Conv2d(32, 32, 5),
        "depthwise": nn.Conv2d(32, 32, 3, groups=32),
        "narrow": nn.Conv2d(32, 16, 3),  # min(in, out) = 16 is not > 16
        "reflect": nn.Conv2d(32, 32, 3, padding_mode="reflect"),
        "rect": nn.Conv2d(32, 32, (1, 3)),
        "sub": _Subclass(32, 32, 3),
        "downsample": nn.Sequential(nn.Conv2d(32, 64, 1), nn.BatchNorm2d(64)),
        "lin": nn.Linear(32, 32),
    })  # fmt: skip
    assert to_fdconv(net) is net
    assert isinstance(net["ok3"], FDConv) and isinstance(net["ok1"], FDConv)
    for name in ("stem", "k5", "depthwise", "narrow", "reflect", "rect"):
        assert type(net[name]) is nn.Conv2d, name
    assert type(net["sub"]) is _Subclass and type(net["downsample"][0]) is nn.Conv2d
    assert not fdconv_eligible(net["lin"]) and fdconv_eligible(nn.Conv2d(17, 17, 3))
    to_fdconv(net, exclude=(), min_channels=8, kernel_sizes=(1, 3, 5))  # rules are options
    assert isinstance(net["downsample"][0], FDConv) and isinstance(net["k5"], FDConv)
    assert isinstance(net["narrow"], FDConv) and type(net["depthwise"]) is nn.Conv2d
    bare = to_fdconv(nn.Conv2d(32, 32, 3))
    assert isinstance(bare, FDConv)
    with pytest.raises(ValueError, match="groups=1"):
        FDConv(32, 32, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        FDConv(32, 32, 3, padding_mode="circular")


@pytest.mark.parametrize("inp", ["dct", "rgb"])
def test_to_fdconv_on_compact_resnet18(inp):
    torch.manual_seed(0)
    net = create_model("resnet18", input=inp, in_channels=24 if inp == "dct" else None,
                       num_classes=2).double().eval()  # fmt: skip
    x = _x(2, 24 if inp == "dct" else 3, 16 if inp == "dct" else 64, 16 if inp == "dct" else 64)
    before = net(x)
    plain = copy.deepcopy(net)
    _set_heads(to_fdconv(net, kernel_num=4), 0.0)
    names = {n for n, m in net.named_modules() if isinstance(m, FDConv)}
    assert names == {f"layer{i}.{j}.conv{c}" for i in range(1, 5) for j in range(2)
                     for c in (1, 2)}  # every block conv; stem and shortcuts stay plain
    after = net(x)
    assert after.shape == before.shape == (2, 2)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-10)  # weights carried over
    rep = parameter_overhead(net)
    assert rep["params_conv"] == sum(p.numel() for p in plain.parameters())
    assert rep["params_fdconv"] == sum(p.numel() for p in net.parameters())
    assert rep["added"] == rep["params_fdconv"] - rep["params_conv"] == sum(
        rep["added_by_part"].values())
    assert rep["fdconv_layers"] == 16 and rep["plain_convs"] == 4


def test_parameter_overhead_of_one_layer_by_hand():
    m = nn.Sequential(to_fdconv(nn.Conv2d(64, 64, 3, padding=1, bias=False)))
    rep = parameter_overhead(m)
    fdw = 64 * 3 * (64 * 3 // 2 + 1) * 2 - 64 * 64 * 9  # rfft2 bins x (re, im) − weight
    hidden = 16  # max(64 / 16, 16)
    ksm_global = (64 * hidden + 2 * hidden + 2  # fc, BN, StarReLU
                  + (hidden + 1) * (64 + 64 + 9 + 4))  # heads: channel, filter, spatial, kernel
    ksm_local = 2 * 64 + 64 * 9 * 5  # LayerNorm + 1-D conv with 5 taps
    fbm = 3 * (64 * 9 + 1)  # three 3x3 maps 64 → 1
    assert rep["added_by_part"] == {"fdw": fdw, "ksm_global": ksm_global,
                                    "ksm_local": ksm_local, "fbm": fbm}  # fmt: skip
    assert rep["params_conv"] == 64 * 64 * 9 and rep["plain_convs"] == 0
    assert rep["params_fdconv"] == 64 * 64 * 9 + fdw + ksm_global + ksm_local + fbm


# ----------------------------------------------------------------- trainer
def test_classify_cli_with_fdconv(stores, tmp_path):
    out = tmp_path / "fd"
    code, stdout = _classify([
        "--store", str(stores["dct-train"]), "--val-store", str(stores["dct-val"]),
        "--conv", "fdconv", "--crop", "56", "--epochs", "1", "--batch-size", "2", "--smoke",
        "--out", str(out),
    ])  # fmt: skip
    assert code == 0, stdout
    start, epoch, _ = _lines((out / "log.jsonl").read_text())
    assert start["config"]["conv"] == "fdconv"
    assert start["fdconv"]["fdconv_layers"] == 16
    assert start["model_params"] == start["fdconv"]["params_fdconv"]
    assert start["fdconv"]["params_conv"] == 2_793_154  # compact ResNet-18 DCT-24, 2 classes
    assert np.isfinite(epoch["train_loss"]) and epoch["train_samples"] == 4
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert any(k.endswith("layer1.0.conv1.spectrum") for k in ckpt["model"])
    code, stdout = _classify(["--store", str(stores["dct-train"]), "--conv", "odconv",
                              "--out", str(tmp_path / "bad")])  # fmt: skip
    assert code == 2
