"""What every ``freqdata`` command shares: exit statuses, the error console, small parsers.

Exit status of every command: 0 = success; 1 = finished, but some inputs failed (they are
listed in the store's error log and the summary); 2 = bad usage or options, nothing done.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
console = Console(stderr=True)

# Options every ``freqdata train ...`` command takes, with the same meaning and help.
Epochs = Annotated[int, typer.Option(help="Epochs.")]
LearningRate = Annotated[float, typer.Option(help="Peak learning rate.")]
WeightDecay = Annotated[float, typer.Option(help="Weight decay (weights only).")]
WarmupEpochs = Annotated[float, typer.Option(help="Linear warm-up, then cosine.")]
Resume = Annotated[bool, typer.Option(help="Continue from OUT/last.pt.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")]
Amp = Annotated[bool | None, typer.Option(help="bf16 autocast (default: on CUDA).")]
ChannelsLast = Annotated[bool, typer.Option(help="channels_last memory format.")]
TorchThreads = Annotated[int | None, typer.Option(
    help="torch intra-op threads (default: torch's; 1 on a busy machine).")]
Smoke = Annotated[bool, typer.Option(help="A few steps, for tests.")]
Quiet = Annotated[bool, typer.Option(help="Do not echo the JSON lines.")]


def fail(msg: str) -> NoReturn:
    """Print ``error: msg`` on stderr and exit with :data:`EXIT_USAGE`."""
    console.print(f"[bold red]error:[/] {msg}", soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def human(n: float) -> str:
    """Bytes as B / KiB / MiB / GiB."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def int_list(text: str | None, option: str, *, allow_empty: bool = False) -> list[int]:
    """``"8,16,32"`` → ``[8, 16, 32]`` (non-negative); a usage error (exit 2) otherwise."""
    if text is None or not text.strip():
        if allow_empty:
            return []
        fail(f"{option} needs comma-separated non-negative integers")
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"{option} takes comma-separated non-negative integers, got {text!r}")
    if (not values and not allow_empty) or any(v < 0 for v in values):
        fail(f"{option} takes comma-separated non-negative integers, got {text!r}")
    return values


def run_trainer(train: Callable[..., Any], cfg: Any, *, quiet: bool) -> None:
    """``train(cfg, on_log=...)``, echoing each JSON log record on stdout unless ``quiet``;
    the trainer's ``ValueError`` / ``FileNotFoundError`` / ``FileExistsError`` (bad options,
    nothing trained) become a usage error (exit 2)."""

    def echo(rec: dict[str, Any]) -> None:
        if not quiet:
            typer.echo(json.dumps(rec))

    try:
        train(cfg, on_log=echo)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        fail(str(e))
