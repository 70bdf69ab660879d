"""``freqdata quality ...``: how faithful a representation is (tables, JSON, PNG)."""

from __future__ import annotations

import typer

quality_app = typer.Typer(help="Representation quality reports.", no_args_is_help=True)
