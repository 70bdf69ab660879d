"""Training-grade augmentation in the classification trainer (issue 16, part 2) on tiny
stores of real ants/bees images: ``freqdata train classify --augment`` smoke runs of the DCT
and RGB arms, and the two arms drawing the same boxes and flips (the DCT arm's augmented
batch, taken back to RGB pixels, is the RGB arm's augmented batch)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ANTS_BEES, ants_bees
from typer.testing import CliRunner

from freqdata.augment.pixels import resized_crop_pixels
from freqdata.augment.sampling import draw_boxes, resized_crop_params
from freqdata.cli.main import app
from freqdata.job import EncodeOptions, encode_images
from freqdata.trainers.data import build_pipeline, eval_crop_for
from freqdata.trainers.rgb import encode_rgb

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()


@pytest.fixture(scope="module")
def stores(tmp_path_factory, data_dir):
    """Square "margin" stores (S:S) of 4 training and 2 validation images: dctnet-24 at 64
    and 128 pixels, all 192 coefficients at 64 pixels, RGB at 64 pixels."""
    root = tmp_path_factory.mktemp("augment-train")
    out = {}
    for split, n in (("train", 2), ("val", 1)):
        src = ants_bees(split, n)
        for name, opts in (
            ("dct", EncodeOptions("dctnet-24", "pixels", "64:64")),
            ("dct2x", EncodeOptions("dctnet-24", "pixels", "128:128")),
            ("all", EncodeOptions("all", "pixels", "64:64")),
        ):
            out[f"{name}-{split}"] = root / f"{name}-{split}.zarr"
            encode_images(src, out[f"{name}-{split}"], opts, workers=0)
        out[f"rgb-{split}"] = root / f"rgb-{split}.zarr"
        encode_rgb(src, out[f"rgb-{split}"], "64:64")
    return out


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


@pytest.mark.parametrize(
    ("arm", "augment", "crop"),
    [("dct", "standard", 48), ("dct", "randaugment", 48), ("dct", "none", 48),
     ("rgb", "standard", 48), ("rgb", "none", 48)],
)  # fmt: skip
def test_smoke_runs_with_each_option(stores, tmp_path, arm, augment, crop):
    out = tmp_path / "run"
    r = runner.invoke(app, [
        "train", "classify", "--store", str(stores[f"{arm}-train"]),
        "--val-store", str(stores[f"{arm}-val"]), "--input", arm, "--crop", str(crop),
        "--augment", augment, "--epochs", "1", "--batch-size", "2", "--smoke", "--out", str(out),
        "--model", "resnet18", "--json",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    start, epoch = _lines((out / "log.jsonl").read_text())[:2]
    assert np.isfinite(epoch["train_loss"]) and 0 <= epoch["val_top1"] <= 1
    if augment == "none":
        assert "augment" not in start["data"]
        return
    assert start["data"]["augment"] == augment and start["data"]["eval_crop"] == 0.875
    side = crop // 8 if arm == "dct" else crop
    assert start["in_shape"][1:] == [side, side]
    # the whole stored image travels; the crop is made on the device
    per = 24 * 8 * 8 * 2 if arm == "dct" else 3 * 64 * 64
    assert epoch["bytes_per_sample"] == per


def test_randaugment_on_rgb_and_ragged_stores_are_refused(stores, tmp_path):
    r = runner.invoke(app, [
        "train", "classify", "--store", str(stores["rgb-train"]), "--input", "rgb",
        "--augment", "randaugment", "--smoke", "--out", str(tmp_path / "r"),
    ])  # fmt: skip
    assert r.exit_code == 2 and "DCT inputs" in r.output
    ragged = tmp_path / "ragged.zarr"
    encode_images(ants_bees("train", 1), ragged, EncodeOptions("dctnet-24", "pixels", "none"),
                  workers=0)  # fmt: skip
    r = runner.invoke(app, [
        "train", "classify", "--store", str(ragged), "--augment", "standard", "--crop", "32",
        "--smoke", "--out", str(tmp_path / "g"),
    ])  # fmt: skip
    assert r.exit_code == 2 and "fixed grid" in r.output


def test_eval_crop_follows_the_geometry():
    assert eval_crop_for({"geometry": "resnet"}) == 1.0  # already a centre crop
    assert eval_crop_for({"geometry": "256:224"}) == 1.0
    assert eval_crop_for({"geometry": "256:256"}) == 0.875  # a margin store


def test_box_step_draws_the_same_boxes_at_twice_the_resolution():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    coarse = resized_crop_params(240, 320, 64, g1)
    fine = draw_boxes(480, 641, 64, g2, step=2)
    assert torch.equal(fine, coarse * 2)
    g1.manual_seed(5)
    assert torch.equal(draw_boxes(240, 320, 8, g1), resized_crop_params(240, 320, 8,
                       torch.Generator().manual_seed(5)))  # fmt: skip


def _to_rgb(planes: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` float YCbCr → RGB (the equations of ``ycbcr_to_rgb``, no rounding)."""
    y, cb, cr = planes[:, 0], planes[:, 1] - 128, planes[:, 2] - 128
    return torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)


def _unnormalize(aug, x: torch.Tensor) -> torch.Tensor:
    return x / aug.inv_std + aug.mean


def test_dct_and_rgb_arms_see_the_same_crops_and_flips(stores):
    """Same seed: the DCT arm (all 192 coefficients, resized crop in the DCT domain) taken
    back to RGB pixels equals the RGB arm's crop of the same stored image, batch by batch,
    training (random boxes + flips) and evaluation (centre box)."""
    from augment_data import pixels

    kw = dict(batch_size=4, seed=11, crop=40, threads=0, augment="standard")
    dct = build_pipeline("dct", stores["all-train"], **kw)
    rgb = build_pipeline("rgb", stores["rgb-train"], **kw)
    norm = dct.augment_train.normalize
    for train in (True, False):
        a_dct = dct.augment_train if train else dct.augment_val
        a_rgb = rgb.augment_train if train else rgb.augment_val
        for bd, br in zip(dct.train, rgb.train, strict=True):
            assert torch.equal(bd["indices"], br["indices"])
            xd, yd = a_dct(bd)
            xr, yr = a_rgb(br)
            assert torch.equal(yd, yr)
            coeffs = _unnormalize(norm, xd).double()
            got = _to_rgb(torch.from_numpy(pixels(coeffs.numpy())))
            want = _unnormalize(a_rgb, xr).double()
            # the stores round differently (int16 coefficients, uint8 RGB): small, and no
            # other box or flip comes near
            err = (got - want).abs()
            assert err.mean() < 1.0, float(err.mean())  # 0.28 measured; another seed: 37


def test_resized_crop_pixels_is_torchvision_resized_crop(stores):
    from freqdata.trainers.rgb import RGBStore

    s = RGBStore(stores["rgb-train"])
    x = np.empty((4, 3, *s.grid), np.uint8)
    s.read(np.arange(4), x)
    x = torch.from_numpy(x).double()
    boxes = resized_crop_params(64, 64, 4, torch.Generator().manual_seed(0))
    got = resized_crop_pixels(x, boxes, (40, 40))
    for i, (t, lf, h, w) in enumerate(boxes.tolist()):
        ref = torch.nn.functional.interpolate(x[i : i + 1, :, t : t + h, lf : lf + w], (40, 40),
                                              mode="bilinear", antialias=True)  # fmt: skip
        assert torch.allclose(got[i], ref[0], atol=1e-9)


def test_smoke_run_on_the_fly_from_an_image_folder(tmp_path):
    import shutil

    folder = tmp_path / "images"
    for cls in ("ants", "bees"):
        (folder / cls).mkdir(parents=True)
        for p in sorted((ANTS_BEES / "train" / cls).glob("*.jpg"))[:2]:
            shutil.copy(p, folder / cls / p.name)
    out = tmp_path / "fly"
    r = runner.invoke(app, [
        "train", "classify", "--store", str(folder), "--val-store", str(folder),
        "--geometry", "72:64", "--augment", "standard", "--threads", "0", "--epochs", "1",
        "--batch-size", "2", "--smoke", "--out", str(out), "--json",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    start, epoch = _lines((out / "log.jsonl").read_text())[:2]
    assert start["data"]["store_kind"] == "images on the fly"
    assert start["in_shape"] == [24, 8, 8] and epoch["bytes_per_sample"] == 24 * 8 * 8 * 2
    assert np.isfinite(epoch["train_loss"]) and start["data"]["val_samples"] == 4
    r = runner.invoke(app, [
        "train", "classify", "--store", str(folder), "--augment", "randaugment", "--smoke",
        "--out", str(tmp_path / "x"),
    ])  # fmt: skip
    assert r.exit_code == 2 and "on the fly" in r.output


def test_experiment_arms_with_augmentation_have_their_command_lines(tmp_path):
    from freqdata.trainers.classify import ClassifyConfig
    from freqdata.trainers.experiment import ARMS, command, prepare

    arm = ARMS["dct448-aug"]
    cfg = ClassifyConfig(store="s.zarr", crop=arm.crop, augment=arm.augment,
                         box_step=arm.box_step)  # fmt: skip
    assert "--augment standard --box-step 2" in command(cfg)
    fly = ARMS["dct448-fly"]
    assert prepare(fly, tmp_path, tmp_path) == (tmp_path / "train", tmp_path / "val")
    cfg = ClassifyConfig(store=str(tmp_path / "train"), augment="standard", geometry="resnet")
    assert command(cfg).endswith("--augment standard --preset dctnet-24 --geometry resnet")


@pytest.mark.parametrize("arm", ["dct", "rgb"])
def test_resumed_augmented_run_equals_the_uninterrupted_one(stores, tmp_path, arm):
    """The box, flip and policy generators are checkpointed: stopping after epoch 1 and
    resuming gives the uninterrupted run's numbers."""
    from conftest import StopRun, stop_after_first_epoch

    from freqdata.trainers.classify import ClassifyConfig, train_classify

    def cfg(name: str, resume: bool = False) -> ClassifyConfig:
        return ClassifyConfig(store=str(stores[f"{arm}-train"]),
                              val_store=str(stores[f"{arm}-val"]), input=arm, crop=40,
                              augment="standard", epochs=2, batch_size=2, smoke=True, seed=4,
                              out=str(tmp_path / name), resume=resume)  # fmt: skip

    full = train_classify(cfg("full"))
    with pytest.raises(StopRun):
        train_classify(cfg("cut"), on_log=stop_after_first_epoch)
    resumed = train_classify(cfg("cut", resume=True))
    for k in ("train_loss", "val_loss", "lr"):
        assert full["final"][k] == pytest.approx(resumed["final"][k], rel=1e-5, abs=1e-6), k


def test_keep_preset_crops_with_all_stored_channels_and_returns_the_models(stores):
    kw = dict(batch_size=2, seed=1, crop=40, threads=0, augment="standard")
    full = build_pipeline("dct", stores["all-train"], **kw)
    kept = build_pipeline("dct", stores["all-train"], keep_preset="dctnet-24", **kw)
    assert kept.in_channels == 24 and kept.bytes_per_sample == full.bytes_per_sample
    names = full.channel_names
    pick = [names.index(n) for n in kept.channel_names]
    for bf, bk in zip(full.train, kept.train, strict=True):
        xf, _ = full.augment_train(bf)
        xk, _ = kept.augment_train(bk)
        assert torch.equal(xk, xf[:, pick])
    with pytest.raises(ValueError, match="needs --input dct"):
        build_pipeline("dct", stores["all-train"], keep_preset="dctnet-24", batch_size=2)
