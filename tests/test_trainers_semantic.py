"""The semantic-segmentation trainer: DeepLabv3+ shapes and truncation, the FLOPs counter,
the label pipeline on real COCO maps against freqdata.masks, the loss's ignore handling,
mIoU and R_ce against straightforward references, and ``freqdata train semantic`` end to
end on tiny stores of real COCO val images (full and block-wise labels, resume)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import COCO_VAL, DATA, StopRun, stop_after_first_epoch
from torch import nn
from typer.testing import CliRunner

from freqdata.cli.main import app
from freqdata.job import EncodeOptions, encode_images
from freqdata.masks import blockwise, ce_spectrum, miou
from freqdata.masks.store import category_maps, encode_masks, open_mask_store
from freqdata.masks.weak import IGNORE_INDEX
from freqdata.sources import Sources
from freqdata.trainers.deeplab import DeepLabV3Plus, forward_flops, resample
from freqdata.trainers.rgb import encode_rgb
from freqdata.trainers.semantic import (
    SemanticConfig,
    confusion_matrix,
    iou_scores,
    relative_ce_rates,
    seg_loss,
    train_semantic,
)
from freqdata.trainers.semantic_data import (
    SemanticAugment,
    build_semantic_data,
    class_table,
    label_geometry,
    semantic_loader,
)

runner = CliRunner()
ANN_VAL = DATA / "coco" / "coco-mini" / "instances_val2017.json"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def coco(data_dir):
    return json.loads(ANN_VAL.read_text())


@pytest.fixture(scope="module")
def stores(tmp_path_factory, coco):
    """6 annotated COCO val images (with people) + 1 unannotated one: RGB and DCT stores at
    72:64 and their mask store (block-wise labels for nu 8)."""
    root = tmp_path_factory.mktemp("semantic")
    person = {a["image_id"] for a in coco["annotations"] if a["category_id"] == 1}
    ims = sorted((im for im in coco["images"] if im["id"] in person), key=lambda im: im["id"])[:6]
    annotated = {im["file_name"] for im in coco["images"]}
    extra = next(p for p in sorted(COCO_VAL.glob("*.jpg")) if p.name not in annotated)
    paths = [str(COCO_VAL / im["file_name"]) for im in ims] + [str(extra)]
    src = Sources(paths, [0] * len(paths), ["coco"])
    out = {"root": root, "ids": [im["id"] for im in ims]}
    out["rgb"] = root / "rgb.zarr"
    encode_rgb(src, out["rgb"], "72:64")
    out["dct"] = root / "dct.zarr"
    encode_images(src, out["dct"], EncodeOptions("dctnet-24", "pixels", "72:64"), workers=0)
    out["masks"] = root / "masks.zarr"
    encode_masks(ANN_VAL, out["masks"], weak=[8], patch=False, image_ids=out["ids"])
    return out


# ------------------------------------------------------------------------ network
@pytest.mark.parametrize(("inp", "c", "size"), [("rgb", 3, 64), ("dct", 24, 8)])
def test_deeplab_shapes_output_stride_and_truncation(inp, c, size):
    torch.manual_seed(0)
    net = DeepLabV3Plus(3, input=inp, in_channels=c if inp == "dct" else None).eval()
    x = torch.randn(2, c, size, size)
    pixels = size * (8 if inp == "dct" else 1)
    stages = net.backbone.forward_stages(x)
    assert stages[0].shape[-1] == pixels // (8 if inp == "dct" else 4)  # the low-level skip
    assert stages[-1].shape[-1] == pixels // 16  # output stride 16 (dilated stages)
    seen = []
    net.classifier.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    with torch.no_grad():
        for g in (None, 5, 3):
            net.truncate = g
            assert net(x).shape == (2, 3, pixels, pixels)
    assert seen == [tuple(stages[0].shape[-2:]), (5, 5), (3, 3)]


def test_resample_pools_down_and_interpolates_up():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(resample(x, (2, 2)), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert resample(x, (4, 4)) is x
    up = resample(x, (8, 8))
    assert up.shape == (1, 1, 8, 8) and up[0, 0, 0, 0] == 0.0


def test_flop_counter_matches_the_closed_form():
    conv = nn.Conv2d(5, 7, 3, padding=1, stride=2)
    x = torch.randn(2, 5, 20, 18)
    # 2 FLOPs per multiply-add: 2 * B * Cout * Ho * Wo * Cin * k * k (bias not counted)
    assert forward_flops(conv, x) == 2 * 2 * 7 * 10 * 9 * 5 * 3 * 3
    net = DeepLabV3Plus(2, input="rgb")
    x = torch.zeros(1, 3, 64, 64)
    base = forward_flops(net, x)
    assert net.training  # restored
    net.truncate = 8  # the decoder (skip 16x16) runs on 8x8: its conv FLOPs scale by 1/4
    dec = sum(2 * m.out_channels * m.in_channels * math.prod(m.kernel_size)
              for m in (*net.low_proj.modules(), *net.decoder.modules(), net.classifier)
              if isinstance(m, nn.Conv2d))  # fmt: skip
    assert base - forward_flops(net, x) == dec * (16 * 16 - 8 * 8)


# ------------------------------------------------------------------------ labels
def _reference_crop(lab: np.ndarray, s: int, c: int) -> np.ndarray:
    """Resize shorter side to s, centre crop c, nearest at pixel centres (plain loops)."""
    h, w = lab.shape
    if w <= h:
        tw, th = s, round(h * s / w)
    else:
        tw, th = round(w * s / h), s
    y0, x0 = (th - c) // 2, (tw - c) // 2
    out = np.empty((c, c), lab.dtype)
    for i in range(c):
        for j in range(c):
            yy = min(math.floor((y0 + i + 0.5) * h / th), h - 1)
            xx = min(math.floor((x0 + j + 0.5) * w / tw), w - 1)
            out[i, j] = lab[yy, xx]
    return out


def test_label_pipeline_on_real_coco_maps(stores, coco):
    data = build_semantic_data("rgb", stores["rgb"], stores["rgb"], train_masks=stores["masks"],
                               val_masks=stores["masks"], nu_max=8)  # fmt: skip
    assert data.class_names == ["background", "person"] and data.size == (64, 64)
    # the unannotated image is left out; the annotated ones keep their store rows
    assert len(data.train) == 6 and len(data.train.store) == 7
    assert list(data.train.image_ids) == stores["ids"]
    masks = open_mask_store(stores["masks"])
    maps = dict(category_maps(coco, stores["ids"]))
    for k, iid in enumerate(stores["ids"]):
        full = maps[iid]
        assert np.array_equal(masks.weak_full(masks.image_row(iid)), full)
        ref = _reference_crop(full, 72, 64)
        ref = np.where(ref == 1, 1, np.where(ref == IGNORE_INDEX, IGNORE_INDEX, 0))
        assert np.array_equal(data.train.full[k], ref)
        assert np.array_equal(data.train.train[k], blockwise(ref, 8))  # 17 cells per crop side
    assert (data.train.full == 1).any()
    assert np.array_equal(data.val.train, data.val.full)  # validation: full labels
    # several classes: labels 1..k in the order given, the rest background
    lut, names = class_table(masks.categories, "dog,person")
    assert names == ["background", "dog", "person"]
    dog = next(c["label"] for c in masks.categories if c["name"] == "dog")
    assert (lut[dog], lut[1], lut[3], lut[0], lut[IGNORE_INDEX]) == (1, 2, 0, 0, IGNORE_INDEX)
    lut, names = class_table(masks.categories, "objects")
    assert names == ["background", "object"]
    assert (lut[0], lut[1], lut[dog], lut[IGNORE_INDEX]) == (0, 1, 1, IGNORE_INDEX)
    with pytest.raises(ValueError, match="unknown classes"):
        class_table(masks.categories, "person,unicorn")


def test_geometry_keeps_labels_under_their_pixels():
    lab = np.zeros((300, 400), np.uint8)
    lab[100:200, 150:250] = 1  # a box in the middle of a 400x300 image
    out = label_geometry(lab, "160:128")  # resized to 213x160, crop x 42..170, y 16..144
    assert np.array_equal(out, _reference_crop(lab, 160, 128))
    ys, xs = np.nonzero(out)  # source row floor((16.5 + i) * 300 / 160) in 100..199, etc.
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (37, 90, 38, 90)
    with pytest.raises(ValueError, match="crop geometry"):
        label_geometry(lab, "none")


def test_loader_and_joint_flips(stores):
    data = build_semantic_data("dct", stores["dct"], train_masks=stores["masks"], nu_max=8)
    loader = semantic_loader(data.train, batch_size=3, shuffle=True, seed=1, drop_last=True)
    plain = SemanticAugment(data.train.store, train=False)
    aug = SemanticAugment(data.train.store, train=True, seed=5)
    gen = torch.Generator().manual_seed(5)
    n_flipped = 0
    for batch in loader:
        x0, y0 = plain(batch)
        assert x0.shape == (3, 24, 8, 8) and y0.shape == (3, 64, 64) and y0.dtype == torch.int64
        assert np.array_equal(y0.numpy(), data.train.train[batch["indices"].numpy()])
        x, y = aug(batch)
        flipped = torch.rand(3, generator=gen) < 0.5
        for b in range(3):
            if flipped[b]:
                n_flipped += 1
                assert torch.equal(y[b], y0[b].flip(-1))
                assert torch.allclose(x[b, 0], x0[b, 0].flip(-1))  # DC: plain mirror
                # u = 1: the stored coefficient changes sign, then it is normalized
                raw = batch["cubes"][b, 1].double().flip(-1)
                m, sd = float(data.train.store.mean[1]), float(data.train.store.std[1])
                torch.testing.assert_close(x[b, 1].double(), (-raw - m) / sd, rtol=0, atol=1e-6)
            else:
                assert torch.equal(y[b], y0[b]) and torch.equal(x[b], x0[b])
    assert n_flipped > 0


@pytest.mark.parametrize("kind", ["rgb", "dct"])
def test_joint_random_crops_in_whole_blocks(stores, kind):
    data = build_semantic_data(kind, stores[kind], train_masks=stores["masks"], nu_max=8)
    batch = next(iter(semantic_loader(data.train, batch_size=4, shuffle=False)))
    x0, y0 = SemanticAugment(data.train.store, train=False)(batch)
    x, y = SemanticAugment(data.train.store, train=True, seed=2, crop=40)(batch)
    assert y.shape == (4, 40, 40)
    gen = torch.Generator().manual_seed(2)
    oy = 8 * torch.randint(0, 4, (4,), generator=gen)  # (64 - 40) // 8 + 1 = 4 offsets
    ox = 8 * torch.randint(0, 4, (4,), generator=gen)
    flipped = torch.rand(4, generator=gen) < 0.5
    s = 8 if kind == "dct" else 1
    for b in range(4):
        py, px = int(oy[b]), int(ox[b])
        yy = y0[b, py : py + 40, px : px + 40]
        xx = x0[b, 0, py // s : (py + 40) // s, px // s : (px + 40) // s]  # first channel
        if flipped[b]:
            yy, xx = yy.flip(-1), xx.flip(-1)
        assert torch.equal(y[b], yy) and torch.allclose(x[b, 0], xx)
    with pytest.raises(ValueError, match="multiple of 8"):
        SemanticAugment(data.train.store, train=True, crop=36)


# ------------------------------------------------------------------------ loss and scores
def test_seg_loss_leaves_ignored_pixels_out():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (2, 5, 4))
    target[0, :2] = IGNORE_INDEX
    lp = torch.log_softmax(logits.detach(), 1).numpy()
    terms = [-lp[b, target[b, i, j], i, j] for b in range(2) for i in range(5) for j in range(4)
             if target[b, i, j] != IGNORE_INDEX]  # fmt: skip
    assert float(seg_loss(logits, target).detach()) == pytest.approx(np.mean(terms), rel=1e-12)
    none = torch.full_like(target, IGNORE_INDEX)
    loss = seg_loss(logits, none)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_miou_matches_references():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, (3, 9, 7))
    target[0, 0] = IGNORE_INDEX
    pred = rng.integers(0, 5, (3, 9, 7))  # class 4 only predicted, class 5 nowhere
    pred[pred == 1] = 0
    pred[target == 1] = 1  # class 1 perfect
    conf = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 6)
    m, ious = iou_scores(conf)
    keep = target != IGNORE_INDEX
    for c in range(6):
        inter = np.sum((pred == c) & (target == c) & keep)
        union = np.sum(((pred == c) | (target == c)) & keep)
        assert ious[c] == (None if union == 0 else pytest.approx(inter / union))
    assert ious[1] == 1.0 and ious[4] == 0.0 and ious[5] is None
    assert m == pytest.approx(miou(pred.ravel(), target.ravel()))


def test_relative_ce_rates_pool_band_sums():
    rng = np.random.default_rng(1)
    labels = [rng.integers(0, 3, (12, 10)), rng.integers(0, 3, (8, 8))]
    labels[0][:2] = IGNORE_INDEX
    logits = [rng.normal(size=(3, *lab.shape)) for lab in labels]
    got = relative_ce_rates(logits, labels, [1, 2, 99])
    band = num = 0.0
    per_image = []
    for lg, lab in zip(logits, labels, strict=True):
        e = ce_spectrum(lg, lab)
        fy = np.abs(np.fft.fftfreq(lab.shape[0]) * lab.shape[0])
        fx = np.abs(np.fft.fftfreq(lab.shape[1]) * lab.shape[1])
        inside = (fy[:, None] <= 2) & (fx[None, :] <= 2)
        band, num = band + e[inside].sum(), num + e.sum()
        per_image.append(e[inside].sum() / e.sum())
    assert got["pooled"]["2"] == pytest.approx(band / num, rel=1e-9)
    assert got["mean"]["2"] == pytest.approx(np.mean(per_image), rel=1e-9)
    assert got["pooled"]["99"] == pytest.approx(1.0, abs=1e-12)
    ignored = np.full((4, 4), IGNORE_INDEX)
    assert relative_ce_rates([logits[1][:, :4, :4]], [ignored], [1]) == {"pooled": {}, "mean": {}}


# ------------------------------------------------------------------------ end to end
def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def _semantic(args: list[str]) -> tuple[int, str]:
    r = runner.invoke(app, ["train", "semantic", *args])
    return r.exit_code, r.stdout


@pytest.mark.parametrize("labels", ["full", "blockwise"])
def test_cli_smoke_rgb(stores, tmp_path, labels):
    extra = ["--nu-max", "8"] if labels == "blockwise" else []
    code, stdout = _semantic([
        "--store", str(stores["rgb"]), "--val-store", str(stores["rgb"]),
        "--masks", str(stores["masks"]), "--val-masks", str(stores["masks"]), "--input", "rgb",
        "--labels", labels, *extra, "--epochs", "1", "--batch-size", "2", "--smoke",
        "--out", str(tmp_path / "run"), "--torch-threads", "1",
    ])  # fmt: skip
    assert code == 0, stdout
    recs = _lines(stdout)
    assert [r["event"] for r in recs] == ["start", "epoch", "end"]
    start, epoch, end = recs
    assert start["flops_per_sample"] == start["flops_by_truncate"]["none"] > 0
    assert start["flops_by_truncate"]["9"] < start["flops_by_truncate"]["none"]
    assert (start["train_label_miou"] == 1.0) == (labels == "full")
    assert set(epoch["val_iou"]) == {"background", "person"}
    assert 0.0 <= epoch["val_miou"] <= 1.0 and epoch["samples_per_s"] > 0
    assert set(end["rce"]["pooled"]) == {"4", "8", "16", "32", "64"}
    assert set(end["val_miou_eval_truncate"]) == {"65", "33", "17", "9"}
    assert (tmp_path / "run" / "last.pt").exists()
    assert _lines((tmp_path / "run" / "log.jsonl").read_text()) == recs


def test_cli_smoke_dct_truncated(stores, tmp_path):
    code, stdout = _semantic([
        "--store", str(stores["dct"]), "--masks", str(stores["masks"]), "--input", "dct",
        "--labels", "blockwise", "--nu-max", "4", "--truncate", "5", "--epochs", "1",
        "--batch-size", "3", "--smoke", "--out", str(tmp_path / "run"), "--quiet",
    ])  # fmt: skip
    assert code == 0, stdout
    start = _lines((tmp_path / "run" / "log.jsonl").read_text())[0]
    assert start["in_shape"] == [24, 8, 8]
    assert start["flops_per_sample"] < start["flops_by_truncate"]["none"]


def test_usage_errors_exit_2(stores, tmp_path):
    base = ["--masks", str(stores["masks"]), "--epochs", "1", "--smoke", "--out",
            str(tmp_path / "e")]  # fmt: skip
    rgb, dct = ["--store", str(stores["rgb"])], ["--store", str(stores["dct"])]
    assert _semantic([*rgb, "--input", "rgb", "--labels", "blockwise", *base])[0] == 2
    assert _semantic([*rgb, "--input", "rgb", "--nu-max", "8", *base])[0] == 2
    assert _semantic([*rgb, "--input", "dct", *base])[0] == 2
    assert _semantic([*dct, "--input", "rgb", *base])[0] == 2
    assert _semantic([*rgb, "--input", "rgb", "--classes", "unicorn", *base])[0] == 2
    assert _semantic([*rgb, "--input", "rgb", "--labels", "weak", *base])[0] == 2
    assert _semantic(["--store", str(stores["root"]), "--input", "rgb", *base])[0] == 2


def test_checkpoint_resume_is_exact(stores, tmp_path):
    def cfg(out: str, resume: bool = False) -> SemanticConfig:
        return SemanticConfig(store=str(stores["rgb"]), val_store=str(stores["rgb"]),
                              masks=str(stores["masks"]), val_masks=str(stores["masks"]),
                              input="rgb", labels="blockwise", nu_max=8, epochs=2,
                              batch_size=2, smoke=True, seed=3, out=str(tmp_path / out),
                              resume=resume)  # fmt: skip

    full = train_semantic(cfg("full"))


    with pytest.raises(StopRun):
        train_semantic(cfg("cut"), on_log=stop_after_first_epoch)
    resumed = train_semantic(cfg("cut", resume=True))
    logged = _lines((tmp_path / "cut" / "log.jsonl").read_text())
    assert [r["event"] for r in logged] == ["start", "epoch", "resume", "epoch", "end"]
    for k in ("train_loss", "val_loss", "val_miou", "lr"):
        assert resumed["final"][k] == pytest.approx(full["final"][k], rel=1e-5, abs=1e-7), k
    with pytest.raises(ValueError, match="different nu_max"):
        train_semantic(dataclasses.replace(cfg("cut", resume=True), nu_max=16))


def test_cli_smoke_fdconv(stores, tmp_path):
    code, stdout = _semantic([
        "--store", str(stores["rgb"]), "--masks", str(stores["masks"]), "--input", "rgb",
        "--conv", "fdconv", "--epochs", "1", "--batch-size", "2", "--smoke",
        "--out", str(tmp_path / "run"), "--quiet",
    ])  # fmt: skip
    assert code == 0, stdout
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ckpt["config"]["conv"] == "fdconv"
    assert "aspp.branches.1.0.spectrum" in ckpt["model"]  # an FDConv's frequency parameters
