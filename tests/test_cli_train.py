"""``freqdata train ...`` run folders and output: a finished run is never replaced without
--overwrite, --resume of a finished run reports its final metrics, JSON lines when stdout
is not a terminal, and the terminal display (progress per epoch, lines, end summary)."""

from __future__ import annotations

import io
import json

import pytest
from conftest import ANTS_BEES
from rich.console import Console
from typer.testing import CliRunner

from freqdata.cli.main import app
from freqdata.cli.train_progress import TrainingDisplay
from freqdata.errors import UsageError
from freqdata.job import EncodeOptions, encode_images
from freqdata.sources import Sources
from freqdata.trainers.run import last_epoch, open_run

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory, data_dir):
    """6 real ants/bees images, dctnet-24 at 72:64 (8x8 blocks)."""
    paths, labels = [], []
    for k, cls in enumerate(("ants", "bees")):
        found = sorted((ANTS_BEES / "train" / cls).glob("*.jpg"))[:3]
        paths += [str(p) for p in found]
        labels += [k] * len(found)
    out = tmp_path_factory.mktemp("train-cli") / "dct.zarr"
    encode_images(Sources(paths, labels, ["ants", "bees"]), out,
                  EncodeOptions("dctnet-24", "pixels", "72:64"), workers=0)  # fmt: skip
    return out


def _classify(store, out, *extra: str):
    return runner.invoke(app, [
        "train", "classify", "--store", str(store), "--val-store", str(store), "--crop", "56",
        "--epochs", "2", "--batch-size", "2", "--smoke", "--out", str(out), *extra,
    ])  # fmt: skip


def _records(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


def test_a_finished_run_is_not_replaced_without_overwrite(store, tmp_path):
    out = tmp_path / "run"
    r = _classify(store, out)
    assert r.exit_code == 0, r.output
    log = (out / "log.jsonl").read_text()
    ckpt = (out / "last.pt").read_bytes()
    r = _classify(store, out)
    assert r.exit_code == 2 and "--overwrite" in r.output and "--resume" in r.output
    assert (out / "log.jsonl").read_text() == log and (out / "last.pt").read_bytes() == ckpt
    assert _classify(store, out, "--resume", "--overwrite").exit_code == 2

    r = _classify(store, out, "--resume")  # finished: nothing to train, the final metrics
    assert r.exit_code == 0, r.output
    end = _records(r.stdout)[-1]
    final = last_epoch(out / "log.jsonl")
    assert end["event"] == "end" and final["epoch"] == 2
    assert end["final"] == {k: v for k, v in final.items() if k != "event"}
    assert end["final"]["train_loss"] > 0

    r = _classify(store, out, "--overwrite")
    assert r.exit_code == 0, r.output
    events = [rec["event"] for rec in _records((out / "log.jsonl").read_text())]
    assert events == ["start", "epoch", "epoch", "end"]  # a fresh log


def test_stdout_not_a_terminal_gets_json_lines_and_quiet_nothing(store, tmp_path):
    r = _classify(store, tmp_path / "a")
    assert r.exit_code == 0
    assert _records(r.stdout) == _records((tmp_path / "a" / "log.jsonl").read_text())
    r = _classify(store, tmp_path / "b", "--quiet")
    assert r.exit_code == 0 and r.stdout == ""


@pytest.mark.parametrize("trainer", ["masks", "semantic"])
def test_every_trainer_refuses_an_existing_run(tmp_path, trainer):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text('{"event": "end"}\n')
    args = ["--store", str(tmp_path / "s.zarr"), "--out", str(out)]
    if trainer == "masks":
        (tmp_path / "s.zarr").mkdir()
        (tmp_path / "a.json").write_text("{}")
        args += ["--annotations", str(tmp_path / "a.json")]
    r = runner.invoke(app, ["train", trainer, *args])
    assert r.exit_code == 2 and "--overwrite" in r.output, r.output
    assert (out / "log.jsonl").read_text() == '{"event": "end"}\n'


def test_open_run(tmp_path):
    out = tmp_path / "r"
    assert open_run(out, resume=False, overwrite=False) == (out / "last.pt", out / "log.jsonl")
    (out / "last.pt").write_bytes(b"x")
    with pytest.raises(UsageError, match="holds a run"):
        open_run(out, resume=False, overwrite=False)
    open_run(out, resume=True, overwrite=False)
    assert (out / "last.pt").exists()
    open_run(out, resume=False, overwrite=True)
    assert not (out / "last.pt").exists()


def test_terminal_display():
    buf = io.StringIO()
    d = TrainingDisplay(Console(file=buf, force_terminal=True, width=120, color_system=None))
    d.on_log({"event": "start", "epoch": 0, "config": {"epochs": 2, "model": "resnet18",
              "input": "dct", "store": "s.zarr", "out": "runs/x"}, "model_params": 1234,
              "device": "cpu"})  # fmt: skip
    for step in (1, 2):
        d.on_step({"epoch": 1, "epochs": 2, "step": step, "steps": 2, "samples": 2 * step,
                   "loss": 0.7})  # fmt: skip
    d.on_log({"event": "epoch", "epoch": 1, "epochs": 2, "train_loss": 0.69, "val_top1": 0.5,
              "samples_per_s": 12.5, "bytes_moved": 99})  # fmt: skip
    for step in (1, 2):  # the second epoch gets a bar of its own
        d.on_step({"epoch": 2, "epochs": 2, "step": step, "steps": 2, "samples": 2 * step,
                   "loss": 0.6})  # fmt: skip
    d.on_log({"event": "end", "epochs": 2, "best_val_top1": 0.5,
              "final": {"epoch": 2, "val_top1": 0.5}})  # fmt: skip
    d.close()
    text = buf.getvalue()
    assert "starting at epoch 0" in text and "1,234 parameters" in text
    assert "epoch 1/2  train_loss 0.69  val_top1 0.5  samples_per_s 12.5" in text
    assert "bytes_moved" not in text
    assert "run finished: runs/x" in text and "best_val_top1" in text and "final val_top1" in text
