# make demo: set up, encode the bundled example images, print the store's summary.
# make test: set up, run the test suite and the linter.
.PHONY: setup demo test lint

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/freqdata encode images examples/images out/demo.zarr --overwrite
	.venv/bin/freqdata inspect out/demo.zarr

test: setup
	.venv/bin/python -m pytest -q
	.venv/bin/ruff check .

lint: setup
	.venv/bin/ruff check .
