"""The training-store measurement (:mod:`freqdata.bench.training_store`) on real ImageNet
sample JPEGs: the all-coefficient store's crop is close to the on-the-fly reference (a
single resampling of the same source region), a dctnet-24 store's is further, and stored /
device bytes grow with the side and the channels."""

from __future__ import annotations

import pytest
from augment_data import IMAGENET

from freqdata.bench.training_store import measure_training_stores

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_all_coefficients_near_the_reference_dctnet24_further(data_dir):
    files = sorted(IMAGENET.glob("*.JPEG"))[:1]
    res = measure_training_stores(files, presets=("dctnet-24", "all"), sides=(256, 512),
                                  boxes_per_file=2)  # fmt: skip
    rows = {(r["preset"], r["geometry"]): r for r in res["rows"]}
    floor = rows["all", "512:512"]
    assert floor["luma_rel"] < 0.05 and floor["luma_mean_abs"] < 2.0  # measured 0.020, 1.19
    assert rows["dctnet-24", "512:512"]["luma_rel"] > floor["luma_rel"]
    assert rows["all", "256:256"]["luma_rel"] > floor["luma_rel"]  # resolution lost at 256
    for preset in ("dctnet-24", "all"):
        small, big = rows[preset, "256:256"], rows[preset, "512:512"]
        assert big["device_bytes_per_sample_int16"] == 4 * small["device_bytes_per_sample_int16"]
        assert big["stored_bytes_per_sample"] > small["stored_bytes_per_sample"]
    assert rows["dctnet-24", "512:512"]["device_bytes_per_sample_int16"] == 24 * 64 * 64 * 2
