"""Named paper recipes (freqdata.trainers.recipes): every recipe's ``--smoke`` version end to
end through ``freqdata train recipe`` (stores encoded from the test data, 2 training steps),
the full configurations, and bad usage."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from freqdata.cli.main import app
from freqdata.trainers.recipes import RECIPES, recipe_config

runner = CliRunner()

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", list(RECIPES))
def test_smoke_recipe_end_to_end(name, tmp_path, data_dir):
    args = ["train", "recipe", name, "--smoke", "--data", str(data_dir), "--work",
            str(tmp_path), "--device", "cpu", "--json"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    logged = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [x["event"] for x in logged] == ["start", "epoch", "end"]
    cfg = logged[0]["config"]
    for k, v in {**RECIPES[name].config, **RECIPES[name].smoke}.items():
        assert cfg[k] == v, k
    assert (tmp_path / "stores" / "train.zarr").is_dir()
    # a second run reuses the finished stores and resumes the finished run
    r = runner.invoke(app, [*args, "--resume"])
    assert r.exit_code == 0, r.output


def test_full_configurations_are_the_papers(tmp_path, data_dir):
    from freqdata.trainers.recipes import dataset_paths

    paths = dataset_paths("coco", data_dir, smoke=True)
    stores = {k: tmp_path / k for k in ("train", "val", "train_masks", "val_masks")}
    c = recipe_config("dctmask-coco", stores, paths, tmp_path / "run")
    assert (c.head, c.model, c.epochs, c.batch_size, c.lr, c.smoke) == (
        "dctmask", "resnet50", 12, 16, 0.02, False)
    c = recipe_config("dctnet-resnet50-imagenet", stores, paths, tmp_path / "run")
    assert (c.model, c.input, c.crop, c.epochs, c.batch_size) == ("resnet50", "dct", 448, 90, 256)
    assert RECIPES["dctnet-resnet50-imagenet"].val_geometry == "resnet"  # 56 x 56 blocks


def test_usage_errors(tmp_path, data_dir):
    r = runner.invoke(app, ["train", "recipe", "nope", "--smoke", "--work", str(tmp_path)])
    assert r.exit_code == 2 and "unknown recipe" in r.output
    r = runner.invoke(app, ["train", "recipe", "dctmask-coco", "--work", str(tmp_path)])
    assert r.exit_code == 2 and "--data" in r.output
    r = runner.invoke(app, ["train", "recipe", "dctmask-coco", "--data", str(tmp_path),
                            "--work", str(tmp_path)])  # fmt: skip
    assert r.exit_code == 2 and "does not exist" in r.output
