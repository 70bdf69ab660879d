# make demo: set up (torch CPU build, freqdata), encode the bundled example images, print the
#            store's summary.
# make test: set up with the test extras (DALI, Dask), run the test suite and the linter.
.PHONY: setup setup-test demo test lint

setup:
	./scripts/setup.sh

setup-test:
	./scripts/setup.sh --test

demo: setup
	.venv/bin/freqdata encode images examples/images out/demo.zarr --overwrite
	.venv/bin/freqdata inspect out/demo.zarr

test: setup-test
	.venv/bin/python -m pytest -q
	.venv/bin/ruff check .

lint: setup
	.venv/bin/ruff check .
