"""The classification trainer end to end on tiny stores of real ants/bees images:
``freqdata train classify --smoke`` (DCT, RGB, gate), JSON logs, checkpoint + resume, and
the RGB and DCT pipelines reading the same samples, crop windows and flips."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import ANTS_BEES, StopRun, ants_bees, stop_after_first_epoch
from typer.testing import CliRunner

from freqdata.cli.main import app
from freqdata.job import EncodeOptions, encode_images
from freqdata.store import open_store
from freqdata.trainers.classify import ClassifyConfig, train_classify
from freqdata.trainers.data import build_pipeline
from freqdata.trainers.rgb import RGBStore, encode_rgb, ycbcr_to_rgb

runner = CliRunner()
EPOCH_KEYS = {"epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
              "samples_per_s", "bytes_per_sample", "lr"}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def stores(tmp_path_factory, data_dir):
    """Tiny stores: 6 training and 4 validation images, DCT (dctnet-24 and all) and RGB."""
    root = tmp_path_factory.mktemp("trainers")
    out = {}
    for split, n in (("train", 3), ("val", 2)):
        src = ants_bees(split, n)
        for name, opts in (
            ("dct", EncodeOptions("dctnet-24", "pixels", "72:64")),  # 8x8 blocks
            ("all", EncodeOptions("all", "pixels", "40:32")),  # 192 x 4x4 blocks
            ("dct2x", EncodeOptions("dctnet-24", "pixels", "144:128")),  # 16x16 blocks
        ):
            out[f"{name}-{split}"] = root / f"{name}-{split}.zarr"
            encode_images(src, out[f"{name}-{split}"], opts, workers=0)
        out[f"rgb-{split}"] = root / f"rgb-{split}.zarr"
        encode_rgb(src, out[f"rgb-{split}"], "72:64")
    out["root"] = root
    return out


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def _classify(args: list[str]) -> tuple[int, str]:
    r = runner.invoke(app, ["train", "classify", *args])
    return r.exit_code, r.stdout


# ------------------------------------------------------------------------ end to end
def test_smoke_dct_end_to_end_logs_json_lines(stores, tmp_path):
    out = tmp_path / "run"
    code, stdout = _classify([
        "--store", str(stores["dct-train"]), "--val-store", str(stores["dct-val"]),
        "--model", "resnet18", "--input", "dct", "--crop", "56", "--epochs", "2",
        "--batch-size", "2", "--smoke", "--out", str(out),
    ])  # fmt: skip
    assert code == 0, stdout
    printed = _lines(stdout)
    logged = _lines((out / "log.jsonl").read_text())
    assert printed == logged
    assert [r["event"] for r in logged] == ["start", "epoch", "epoch", "end"]
    start, e1, e2, end = logged
    assert start["in_shape"] == [24, 7, 7] and start["data"]["crop_blocks"] == [7, 7]
    assert start["bytes_per_sample"] == 24 * 7 * 7 * 2
    for e in (e1, e2):
        assert EPOCH_KEYS <= set(e)
        assert e["bytes_per_sample"] == 24 * 7 * 7 * 2 and e["train_samples"] == 4  # 2 steps
        assert np.isfinite(e["train_loss"]) and 0 <= e["val_top1"] <= 1
        assert e["val_top5"] == 1.0  # two classes: top-5 is top-2
    assert [e1["epoch"], e2["epoch"]] == [1, 2]
    assert end["best_val_top1"] == max(e1["val_top1"], e2["val_top1"])
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["class_names"] == ["ants", "bees"]


def test_smoke_rgb_end_to_end(stores, tmp_path):
    src = tmp_path / "src"
    for cls in ("ants", "bees"):
        (src / cls).mkdir(parents=True)
        for p in sorted((ANTS_BEES / "val" / cls).glob("*.jpg"))[:2]:
            shutil.copy(p, src / cls / p.name)
    (src / "bees" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    r = runner.invoke(app, ["train", "rgb-store", str(src), str(tmp_path / "x.zarr"),
                            "--geometry", "40:32"])  # fmt: skip
    assert r.exit_code == 1, r.output  # one input failed: recorded, the rest encoded
    assert json.loads(r.stdout.splitlines()[0])["encoded"] == 4
    assert RGBStore(tmp_path / "x.zarr").attrs["errors"][0]["path"].endswith("broken.jpg")
    code, stdout = _classify([
        "--store", str(stores["rgb-train"]), "--val-store", str(stores["rgb-val"]),
        "--input", "rgb", "--crop", "56", "--epochs", "1", "--batch-size", "2", "--smoke",
        "--out", str(tmp_path / "rgb"), "--model", "mobilenetv2", "--quiet",
    ])  # fmt: skip
    assert code == 0, stdout
    logged = _lines((tmp_path / "rgb" / "log.jsonl").read_text())
    e = logged[1]
    assert e["event"] == "epoch" and e["bytes_per_sample"] == 3 * 56 * 56
    assert logged[0]["data"]["transport"] == "uint8"


def test_smoke_int8_transport_halves_bytes(stores, tmp_path):
    code, stdout = _classify([
        "--store", str(stores["dct-train"]), "--val-store", str(stores["dct-val"]),
        "--crop", "64", "--transport", "int8", "--epochs", "1", "--batch-size", "2",
        "--smoke", "--out", str(tmp_path / "i8"),
    ])  # fmt: skip
    assert code == 0, stdout
    assert _lines(stdout)[1]["bytes_per_sample"] == 24 * 8 * 8


def test_smoke_gate_writes_heatmap_and_preset(stores, tmp_path):
    out = tmp_path / "gate"
    code, stdout = _classify([
        "--store", str(stores["all-train"]), "--val-store", str(stores["all-val"]),
        "--gate", "--gate-lambda", "0.05", "--epochs", "1", "--batch-size", "3", "--smoke",
        "--out", str(out),
    ])  # fmt: skip
    assert code == 0, stdout
    epoch = _lines(stdout)[1]
    assert 0 <= epoch["gate_channels_kept"] <= 192 and epoch["gate_reg"] > 0
    assert 0 <= epoch["val_gate_channels_kept"] <= 192
    png = (out / "heatmap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    sel = json.loads((out / "selection.json").read_text())
    assert len(sel["rates"]) == 192 and sel["images"] == 4
    preset = json.loads((out / "preset.json").read_text())
    assert set(preset) == {"y", "cb", "cr"}
    assert preset == sel["preset"]
    kept = sum(len(v) for v in preset.values())
    assert kept == sum(r >= 0.5 for r in sel["rates"])


def test_usage_errors_exit_2(stores, tmp_path):
    base = ["--epochs", "1", "--smoke", "--out", str(tmp_path / "e")]
    assert _classify(["--store", str(stores["dct-train"]), "--input", "rgb", *base])[0] == 2
    assert _classify(["--store", str(stores["rgb-train"]), "--input", "dct", *base])[0] == 2
    assert _classify(["--store", str(stores["rgb-train"]), "--input", "rgb", "--gate",
                      *base])[0] == 2  # fmt: skip
    assert _classify(["--store", str(stores["dct-train"]), "--crop", "60", *base])[0] == 2
    assert _classify(["--store", str(stores["dct-train"]), "--model", "vgg", *base])[0] == 2


# ------------------------------------------------------------------------ checkpoint + resume
def test_checkpoint_resume_continues_from_the_saved_epoch(stores, tmp_path):
    def cfg(out: str) -> ClassifyConfig:
        return ClassifyConfig(
            store=str(stores["dct-train"]), val_store=str(stores["dct-val"]), crop=56,
            epochs=3, batch_size=2, smoke=True, out=str(tmp_path / out), seed=3,
        )  # fmt: skip

    full = train_classify(cfg("full"))


    with pytest.raises(StopRun):
        train_classify(cfg("cut"), on_log=stop_after_first_epoch)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["epoch"] == 1
    code, stdout = _classify([
        "--store", str(stores["dct-train"]), "--val-store", str(stores["dct-val"]),
        "--crop", "56", "--epochs", "3", "--batch-size", "2", "--smoke", "--seed", "3",
        "--out", str(tmp_path / "cut"), "--resume",
    ])  # fmt: skip
    assert code == 0, stdout
    printed = _lines(stdout)
    assert printed[0]["event"] == "resume" and printed[0]["epoch"] == 1
    assert [r["epoch"] for r in printed if r["event"] == "epoch"] == [2, 3]
    logged = _lines((tmp_path / "cut" / "log.jsonl").read_text())
    assert [r["event"] for r in logged] == ["start", "epoch", "resume", "epoch", "epoch", "end"]
    # the resumed run is the uninterrupted one: same data order, crops, flips and weights
    a, b = full["final"], printed[-1]["final"]
    for k in ("train_loss", "val_loss", "val_top1", "lr"):
        assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k
    # a resume with other settings is refused
    code, _ = _classify([
        "--store", str(stores["dct-train"]), "--crop", "64", "--epochs", "3", "--smoke",
        "--batch-size", "2", "--seed", "3", "--out", str(tmp_path / "cut"), "--resume",
    ])  # fmt: skip
    assert code == 2


# ------------------------------------------------------------------------ equal data policy
def _find_offset(crop: np.ndarray, full: np.ndarray, step: int) -> tuple[int, int]:
    h, w = crop.shape[-2:]
    for oy in range(0, full.shape[-2] - h + 1, step):
        for ox in range(0, full.shape[-1] - w + 1, step):
            if np.array_equal(full[..., oy : oy + h, ox : ox + w], crop):
                return oy, ox
    raise AssertionError("crop not found")


def test_rgb_and_dct_arms_read_the_same_samples_windows_and_flips(stores):
    """RGB 64 → random 56 crops (4-pixel steps) and DCT 128 → random 112 crops (whole
    blocks): same rows, same crop windows of the image, same flips, batch for batch."""
    rgb = build_pipeline("rgb", stores["rgb-train"], batch_size=4, seed=7, crop=56)
    dct = build_pipeline("dct", stores["dct2x-train"], batch_size=4, seed=7, crop=112)
    rgb_full = RGBStore(stores["rgb-train"])
    dct_full = open_store(stores["dct2x-train"])
    full_rgb = np.empty((len(rgb_full), 3, 64, 64), np.uint8)
    rgb_full.read(np.arange(len(rgb_full)), full_rgb)
    for epoch in (0, 1):
        rgb.train.set_epoch(epoch)
        dct.train.set_epoch(epoch)
        for rb, db in zip(rgb.train, dct.train, strict=True):
            assert torch.equal(rb["indices"], db["indices"])
            for j, i in enumerate(rb["indices"].tolist()):
                ry, rx = _find_offset(rb["images"][j].numpy(), full_rgb[i], 4)
                dy, dx = _find_offset(db["cubes"][j].numpy(), dct_full.cube(i), 1)
                assert (ry, rx) == (4 * dy, 4 * dx)
            xr, _ = rgb.augment_train(rb)
            xd, _ = dct.augment_train(db)
            # flips: the same samples are mirrored (the DC plane of the DCT arm is a
            # block-averaged image: compare its orientation with the RGB luma's)
            luma = xr.mean(1)
            dc = xd[:, 0]
            for j in range(len(luma)):
                small = torch.nn.functional.avg_pool2d(luma[j][None, None], 4)[0, 0]
                same = torch.corrcoef(torch.stack([small.flatten(), dc[j].flatten()]))[0, 1]
                mirrored = torch.corrcoef(torch.stack([small.flip(-1).flatten(), dc[j].flatten()]))[
                    0, 1
                ]
                assert same > mirrored


def test_rgb_store_matches_the_pixel_path(stores):
    """The RGB store's pixels are the pixel path's YCbCr planes converted back to RGB."""
    from freqdata.pixels import load_ycbcr

    s = RGBStore(stores["rgb-val"])
    assert s.channel_names == ["R", "G", "B"] and s.grid == (64, 64) and len(s) == 4
    paths = s.group["paths"][:]
    out = np.empty((1, 3, 64, 64), np.uint8)
    s.read(np.array([1]), out)
    planes = load_ycbcr(str(paths[1]), "72:64").planes
    assert np.array_equal(out[0], ycbcr_to_rgb(planes))
    # and the conversion inverts the JFIF forward transform to within rounding
    from freqdata.pixels import rgb_to_ycbcr

    back = rgb_to_ycbcr(np.moveaxis(out[0], 0, -1))
    assert np.abs(back.astype(int) - planes.astype(int)).max() <= 2
    assert s.mean.shape == (3,) and (s.std > 0).all()


def test_experiment_helpers(tmp_path):
    from freqdata.trainers.experiment import ARMS, _finished, command, summarize

    assert ARMS["dct448"].store_name("train") == "dctnet-24-512x480-train.zarr"
    assert ARMS["rgb224"].store_name("val") == "rgb-256x240-val.zarr"
    cfg = ClassifyConfig(store="a b.zarr", val_store="v.zarr", crop=448, transport="int8",
                         gate=True, gate_lambda=0.3, torch_threads=1, out="o")  # fmt: skip
    cmd = command(cfg)
    assert cmd.startswith("freqdata train classify --store 'a b.zarr' --val-store v.zarr")
    assert "--transport int8" in cmd and "--gate --gate-lambda 0.3" in cmd
    ep = {"event": "epoch", "samples_per_s": 10.0, "val_samples_per_s": 20.0,
          "bytes_per_sample": 5, "train_loss": 0.5}  # fmt: skip
    runs = [
        {"wall_seconds": 1.0, "log": [{**ep, "val_top1": 0.5}, {**ep, "val_top1": 0.6}]},
        {"wall_seconds": 2.0, "log": [{**ep, "val_top1": 0.8}, {**ep, "val_top1": 0.7}]},
    ]
    s = summarize(runs)
    assert s["final_val_top1"]["mean"] == pytest.approx(0.65)
    assert s["best_val_top1"]["mean"] == pytest.approx(0.7)
    assert s["wall_seconds"] == 3.0 and s["bytes_per_sample"] == 5
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"event": "epoch"}) + "\n")
    assert not _finished(log, 15)
    log.write_text(json.dumps({"event": "end", "epochs": 15}) + "\n")
    assert _finished(log, 15) and not _finished(log, 20)
