"""What a ``freqdata train ...`` run shows on a terminal: a progress bar per epoch (steps,
samples/s, running loss), one readable line per finished epoch and an end summary.

The JSON log records go to ``OUT/log.jsonl`` either way; :func:`freqdata.cli.common.run_trainer`
prints them on stdout instead of this display when stdout is not a terminal or with ``--json``.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

# the epoch metrics worth a glance, in this order (whichever a trainer logs)
EPOCH_KEYS = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "AP", "AP50",
              "AP75", "mask_iou", "val_miou", "samples_per_s", "seconds")  # fmt: skip


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


class TrainingDisplay:
    """``on_log`` / ``on_step`` callbacks of a trainer that draw on ``console``; call
    :meth:`close` when the run ends (also on errors)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.bar = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps  {task.fields[rate]:>7.1f} samples/s  loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task: TaskID | None = None
        self.epoch = 0
        self.t0, self.s0 = 0.0, 0  # time and samples at the epoch's first reported step
        self.out = ""

    def on_step(self, s: dict[str, Any]) -> None:
        """Progress within an epoch (:meth:`freqdata.trainers.run.RunLog.step`)."""
        if self.task is None or s["epoch"] != self.epoch:
            self._end_epoch()
            self.bar.start()
            self.epoch, self.t0, self.s0 = s["epoch"], time.perf_counter(), s["samples"]
            self.task = self.bar.add_task("train", total=s["steps"], epoch=f"{s['epoch']}/"
                                          f"{s['epochs']}", rate=0.0, loss=0.0)  # fmt: skip
        dt = time.perf_counter() - self.t0
        rate = (s["samples"] - self.s0) / dt if dt > 0 else 0.0
        self.bar.update(self.task, completed=s["step"], loss=s["loss"], rate=rate)

    def on_log(self, rec: dict[str, Any]) -> None:
        """A JSON log record: ``start`` / ``resume``, ``epoch``, ``end``."""
        event = rec.get("event")
        if event in ("start", "resume"):
            cfg = rec.get("config", {})
            self.out = str(cfg.get("out", ""))
            what = "resuming after epoch" if event == "resume" else "starting at epoch"
            params = rec.get("model_params")
            self.console.print(
                f"[bold]{what} {rec.get('epoch', 0)}[/] of {cfg.get('epochs', '?')}: "
                f"{cfg.get('model', '')} {cfg.get('input', '')} on {cfg.get('store', '')}"
                + (f", {params:,} parameters" if params else "")
                + f", device {rec.get('device', '?')}; log {self.out}/log.jsonl",
                highlight=False,
            )
        elif event == "epoch":
            self._end_epoch()
            shown = "  ".join(f"{k} {_fmt(rec[k])}" for k in EPOCH_KEYS if k in rec)
            self.console.print(f"epoch {rec['epoch']}/{rec['epochs']}  {shown}", highlight=False)
        elif event == "end":
            self._end_epoch()
            t = Table(title=f"run finished: {self.out}", show_header=False)
            for k, v in rec.items():
                if k not in ("event", "final") and not isinstance(v, dict | list):
                    t.add_row(k, _fmt(v))
            for k, v in rec.get("final", {}).items():
                if k not in ("epoch", "epochs") and not isinstance(v, dict | list):
                    t.add_row(f"final {k}", _fmt(v))
            self.console.print(t)

    def _end_epoch(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        self.bar.stop()

    def close(self) -> None:
        """Stop the progress bar (the terminal is left clean)."""
        self._end_epoch()
