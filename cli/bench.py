"""``freqdata bench ...``: benchmarks (commands, never timed tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

bench_app = typer.Typer(help="Benchmarks: print a table, write JSON.", no_args_is_help=True)

EXIT_USAGE = 2


_DECODE_HELP = (
    "Per-image cost of freqdata's encoders vs RGB decoding and DCTNet's pipeline, on one core."
    "\n\n"
    "Rows: coeff, pixels-resnet, simplejpeg-rgb (baseline), simplejpeg-rgb+resize224, "
    "pil-rgb+resize224, dctnet-style (anchor). Files are read into memory first and "
    "everything runs serially in this process; the median of --repeats passes is reported."
    "\n\n"
    "Prints a table and PASS/FAIL per target. Exit status 0 even when a target fails; "
    "2 for bad usage (no usable JPEG, bad option)."
)


@bench_app.command("decode", help=_DECODE_HELP)
def decode_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of JPEGs (*.jpg, *.jpeg; searched "
                                           "recursively).")],
    limit: Annotated[int, typer.Option(help="Use the first N usable files in sorted order.")]
    = 200,
    repeats: Annotated[int, typer.Option(help="Timed passes over the files; the median is "
                                         "reported.")] = 3,
    preset: Annotated[str, typer.Option(help="Channels for the freqdata rows and the anchor.")]
    = "dctnet-24",
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the full result "
                                                   "as JSON to this file.")] = None,
    label: Annotated[str | None, typer.Option(help="Free text stored with the result.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """``freqdata bench decode``: see ``_DECODE_HELP`` and :mod:`freqdata.bench.decode`."""
    import json
    import shlex

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from freqdata.bench.decode import render_table, run_decode_bench, target_lines

    err = Console(stderr=True)
    parts = ["freqdata", "bench", "decode", str(folder), "--limit", str(limit),
             "--repeats", str(repeats), "--preset", preset]
    if json_path is not None:
        parts += ["--json", str(json_path)]
    if label is not None:
        parts += ["--label", label]
    command = shlex.join(parts)

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err, disable=quiet, transient=True) as bar:
        task = bar.add_task("loading", total=None)

        def on_progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description="validating (untimed)" if stage == "validate"
                       else "timed passes", completed=done, total=total)

        try:
            result = run_decode_bench(folder, limit=limit, repeats=repeats, preset=preset,
                                      label=label, command=command, on_progress=on_progress)
        except ValueError as e:  # NoImagesError is a ValueError
            err.print(f"[bold red]error:[/] {e}")
            raise typer.Exit(EXIT_USAGE) from None

    out = Console()
    if not out.is_terminal:
        out.width = max(out.width, 100)  # logs and captured output: no truncated row names
    out.print(render_table(result))
    for line in target_lines(result):
        out.print(line)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        out.print(f"wrote {json_path}")
