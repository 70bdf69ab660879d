"""``python -m freqdata.cli``: the same as the ``freqdata`` command."""

from freqdata.cli.main import app

app(prog_name="freqdata")
