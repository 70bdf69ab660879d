"""``freqdata train ...``: reference trainers on stores."""

from __future__ import annotations

import typer

train_app = typer.Typer(
    help="Reference trainers (classification, masks, segmentation).", no_args_is_help=True
)
