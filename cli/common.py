"""What every ``freqdata`` command shares: exit statuses, the error console, small parsers.

Exit status of every command (the classes of :mod:`freqdata.errors`):

* 0 — success;
* 1 — data that cannot be used: some inputs failed (listed in the store's error log and the
  summary), or a store is missing, damaged, incompatible or busy (:class:`DataError`);
* 2 — bad usage or options, nothing done (:class:`UsageError`, and typer's own errors);
* 130 — interrupted (Ctrl-C);
* anything else that escapes is a bug in freqdata and shows as a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import click
import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperGroup

from freqdata.errors import DataError, UsageError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_DATA = EXIT_SOME_FAILED  # a store or input that cannot be used
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
Quiet = Annotated[bool, typer.Option(help="Nothing on stdout (OUT/log.jsonl has every record).")]
Overwrite = Annotated[bool, typer.Option(help="Replace the run in OUT (log, checkpoint).")]
AsJson = Annotated[bool, typer.Option(
    "--json", help="JSON lines on stdout instead of a progress bar (the log file has them "
    "either way).")]


def _plain_help(params: list[click.Parameter]) -> list[click.Parameter]:
    """Help as a person reads it: arguments in capitals (``SRC``), flags without a type."""
    for p in params:
        if isinstance(p, click.Argument | TyperArgument) and p.metavar is None and p.name:
            p.metavar = p.name.upper()
        elif getattr(p, "is_bool_flag", False) and p.metavar is None:
            p.metavar = ""
    return params


class Command(TyperCommand):
    """A command whose usage line reads ``freqdata encode images [OPTIONS] SRC OUT``."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _plain_help(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p
                for p in super().collect_usage_pieces(ctx)]  # fmt: skip


class Group(TyperGroup):
    """A command group with the same plain help as :class:`Command`."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _plain_help(super().get_params(ctx))


def plain_help(app: typer.Typer) -> typer.Typer:
    """Give ``app`` and every command and group under it :class:`Command` / :class:`Group`
    (typer's default help shows required arguments as ``{src}`` and flags as ``<bool>``)."""
    app.info.cls = Group
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):  # typer's default
            info.cls = Command
    for group in app.registered_groups:
        if group.typer_instance is not None:
            plain_help(group.typer_instance)
    return app


def fail(msg: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: msg`` on stderr and exit with ``code`` (default :data:`EXIT_USAGE`)."""
    console.print(f"[bold red]error:[/] {msg}", soft_wrap=True, markup=True, highlight=False)
    raise typer.Exit(code)


def exit_code(e: BaseException) -> int | None:
    """The exit status of an error a command reports without a traceback: 2 for a
    :class:`UsageError`, 1 for a :class:`DataError`; ``None`` for anything else (a bug)."""
    if isinstance(e, UsageError):
        return EXIT_USAGE
    if isinstance(e, DataError):
        return EXIT_DATA
    return None


@contextmanager
def reported(prefix: str = "") -> Iterator[None]:
    """Turn freqdata's own errors raised inside the block into ``error: ...`` and their exit
    status (:func:`exit_code`); anything else propagates (a traceback: a bug)."""
    try:
        yield
    except (UsageError, DataError) as e:
        fail(f"{prefix}{e}", exit_code(e))  # type: ignore[arg-type]


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


def run_trainer(train: Callable[..., Any], cfg: Any, *, quiet: bool, as_json: bool = False) -> None:
    """``train(cfg, on_log=..., on_step=...)``. On a terminal: a progress bar per epoch, a line
    per epoch and an end summary (:class:`~freqdata.cli.train_progress.TrainingDisplay`);
    when stdout is not a terminal, or with ``as_json``, the JSON log records on stdout (one
    per line, parseable); ``quiet``: nothing. The trainer's :class:`UsageError` (bad options,
    nothing trained) exits 2, its :class:`DataError` (an unusable store) exits 1, Ctrl-C 130."""
    import sys

    from freqdata.cli.train_progress import TrainingDisplay

    display = None
    if quiet:
        kw: dict[str, Any] = {}
    elif as_json or not sys.stdout.isatty():
        kw = {"on_log": lambda rec: typer.echo(json.dumps(rec))}
    else:
        display = TrainingDisplay()
        kw = {"on_log": display.on_log, "on_step": display.on_step}
    try:
        with reported():
            train(cfg, **kw)
    except KeyboardInterrupt:
        if display is not None:
            display.close()
        fail(f"interrupted: continue with --resume (OUT={cfg.out})", EXIT_INTERRUPTED)
    finally:
        if display is not None:
            display.close()
