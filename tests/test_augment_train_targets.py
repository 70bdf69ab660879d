"""Targets follow the resized crop + flip (:mod:`freqdata.augment.targets`), on real images:
label maps equal ``F.interpolate(mode="nearest-exact")`` of each crop box (then mirrored);
a mask's transformed box is the tight box of its transformed mask; boxes cropped away are
flagged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from augment_data import IMAGENET

from freqdata.augment.sampling import resized_crop_params
from freqdata.augment.targets import crop_boxes, resized_crop_maps
from freqdata.pixels import load_ycbcr

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def label_maps(data_dir) -> torch.Tensor:
    """``(4, 256, 256)`` int64 label maps from real images: luma quantized to 8 classes."""
    files = sorted(IMAGENET.glob("*.JPEG"))[:4]
    return torch.stack([torch.from_numpy(load_ycbcr(f, "256:256").planes[0] // 32)
                        for f in files]).to(torch.int64)  # fmt: skip


def test_maps_equal_nearest_exact_interpolation_of_each_box(label_maps):
    crops = resized_crop_params(256, 256, 4, torch.Generator().manual_seed(1))
    flipped = torch.tensor([True, False, True, False])
    got = resized_crop_maps(label_maps, crops, (56, 72), flipped)
    assert got.shape == (4, 56, 72) and got.dtype == torch.int64
    for i, (t, lf, h, w) in enumerate(crops.tolist()):
        box = label_maps[i : i + 1, None, t : t + h, lf : lf + w].double()
        ref = F.interpolate(box, (56, 72), mode="nearest-exact")[0, 0].long()
        assert torch.equal(got[i], ref.flip(-1) if flipped[i] else ref)


def test_transformed_box_is_the_tight_box_of_the_transformed_mask(label_maps):
    masks = (label_maps == label_maps[:, 128:129, 128:129]).to(torch.uint8)  # centre's class
    crops = resized_crop_params(256, 256, 4, torch.Generator().manual_seed(2))
    crops[0] = torch.tensor([0, 0, 256, 256])  # one whole-image crop
    flipped = torch.tensor([False, True, True, False])
    size = (112, 112)
    out = resized_crop_maps(masks, crops, size, flipped)

    def tight(m: torch.Tensor) -> torch.Tensor:
        ys, xs = np.nonzero(m.numpy())
        return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float64)

    checked = 0
    for i in range(4):
        t, lf, h, w = crops[i].tolist()
        visible = torch.zeros_like(masks[i])  # the part of the mask inside the crop
        visible[t : t + h, lf : lf + w] = masks[i, t : t + h, lf : lf + w]
        if not visible.any():
            continue
        want, keep = crop_boxes(tight(visible)[None], crops[i : i + 1], size, flipped[i : i + 1])
        assert keep.item() and out[i].any()
        # nearest sampling: edges within one input pixel, scaled, plus one output pixel
        scale = max(size[0] / h, size[1] / w)
        assert (tight(out[i]).float() - want[0]).abs().max() <= scale + 1.0
        checked += 1
    assert checked >= 3


def test_boxes_outside_the_crop_are_flagged_and_the_flip_mirrors():
    boxes = torch.tensor([[10.0, 10.0, 20.0, 30.0], [200.0, 0.0, 220.0, 10.0]])
    crops = torch.tensor([[0, 0, 100, 100], [0, 0, 100, 100]])
    got, keep = crop_boxes(boxes, crops, (50, 50), torch.tensor([True, False]))
    assert keep.tolist() == [True, False]
    assert got[0].tolist() == [40.0, 5.0, 45.0, 15.0]  # x 5..10 mirrored in a 50-wide output
