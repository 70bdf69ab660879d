"""Mask-head trainer: ResNet stages + FPN, RoIAlign (numpy float64 reference, torchvision when
importable), the three heads' shapes, losses (perfect → 0, hand-computed cases), PatchDCT
targets against ``patch_encode``, the 0.3 inference rule, paste-back against a numpy
reference, the canvas mapping of COCO annotations, box jitter, the oracle-box evaluation,
and ``freqdata train masks --smoke`` for every head, resume included."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import DATA, StopRun, stop_after_first_epoch
from references import roi_bilinear
from typer.testing import CliRunner

from freqdata.cli.main import app
from freqdata.job import EncodeOptions, encode_images
from freqdata.masks import full_image_masks, load_instances, patch_encode
from freqdata.sources import Sources
from freqdata.trainers import create_model
from freqdata.trainers.fpn import MaskBackbone
from freqdata.trainers.mask_data import MaskData, box_iou_pairs, canvas_annotations, jitter_boxes
from freqdata.trainers.mask_eval import MaskEvaluator, paste
from freqdata.trainers.mask_heads import (
    DCT_LOSS_WEIGHT,
    PATCHDCT_LOSS_WEIGHT,
    DCTMaskHead,
    GridHead,
    PatchDCTHead,
    coarse_l1_loss,
    create_head,
    dct_loss,
    grid_loss,
    patch_decode_torch,
    patch_loss,
    patch_targets,
)
from freqdata.trainers.masks import MaskModel, MasksConfig, train_masks
from freqdata.trainers.roi_align import (
    MultiScaleRoIAlign,
    assign_levels,
    roi_align,
    torchvision_roi_align,
)

runner = CliRunner()
COCO_ANN = DATA / "coco" / "coco-mini"
COCO_IMG = DATA / "images-seg" / "coco-mini"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------ backbone + FPN
def test_forward_stages_are_the_feature_path():
    torch.manual_seed(0)
    net = create_model("resnet18", input="dct", in_channels=24).eval()
    x = torch.randn(2, 24, 16, 16)
    stages = net.forward_stages(x)
    assert [tuple(s.shape) for s in stages] == [(2, 32, 16, 16), (2, 64, 8, 8), (2, 128, 4, 4),
                                                (2, 256, 2, 2)]  # fmt: skip
    assert torch.equal(stages[-1], net.forward_features(x))


@pytest.mark.parametrize(("inp", "strides"), [("dct", [8, 16, 32, 64]), ("rgb", [4, 8, 16, 32])])
def test_mask_backbone_levels(inp, strides):
    bb = MaskBackbone(inp, 24 if inp == "dct" else None, channels=16)
    assert bb.strides == strides and bb.levels == [int(math.log2(s)) for s in strides]
    x = torch.randn(1, 24, 16, 16) if inp == "dct" else torch.randn(1, 3, 128, 128)
    feats = bb(x)
    assert [tuple(f.shape) for f in feats] == [(1, 16, 128 // s, 128 // s) for s in strides]


# ------------------------------------------------------------------------ RoIAlign
def _roi_align_ref(f: np.ndarray, box: np.ndarray, k: int, scale: float, s: int) -> np.ndarray:
    """ROIAlignV2 (aligned=True) of one box, straightforward loops."""
    x0, y0, x1, y1 = (float(v) * scale - 0.5 for v in box)
    bh, bw = (y1 - y0) / k, (x1 - x0) / k
    out = np.zeros((f.shape[0], k, k))
    for p in range(k):
        for q in range(k):
            acc = np.zeros(f.shape[0])
            for a in range(s):
                for c in range(s):
                    acc += roi_bilinear(f, y0 + p * bh + (a + 0.5) * bh / s,
                                     x0 + q * bw + (c + 0.5) * bw / s)  # fmt: skip
            out[:, p, q] = acc / (s * s)
    return out


BOXES = np.array([[3.0, 5.0, 40.0, 30.0], [-6.0, -4.0, 20.0, 12.5], [60.0, 50.0, 110.0, 95.0],
                  [10.2, 11.7, 13.9, 14.1], [0.0, 0.0, 96.0, 88.0]])  # fmt: skip


@pytest.mark.parametrize(("scale", "s"), [(1 / 8, 2), (1 / 4, 1), (1 / 8, 3)])
def test_roi_align_matches_the_numpy_reference(scale, s):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2, 3, 11, 12))
    bidx = np.array([0, 1, 1, 0, 1])
    got = roi_align(torch.tensor(feats), torch.tensor(BOXES), torch.tensor(bidx), 5, scale, s,
                    backend="torch")
    assert got.dtype == torch.float64 and got.shape == (5, 3, 5, 5)
    for i in range(len(BOXES)):
        ref = _roi_align_ref(feats[bidx[i]], BOXES[i], 5, scale, s)
        np.testing.assert_allclose(got[i].numpy(), ref, rtol=1e-12, atol=1e-12)


def test_roi_align_is_differentiable_and_empty_safe():
    f = torch.randn(1, 2, 8, 8, requires_grad=True)
    out = roi_align(f, torch.tensor([[8.0, 8.0, 40.0, 40.0]]), torch.tensor([0]), 4, 1 / 8)
    out.sum().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    empty = roi_align(f, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 4)
    assert empty.shape == (0, 2, 4, 4)


def test_roi_align_matches_torchvision():
    tv = torchvision_roi_align()
    if tv is None:
        pytest.skip("torchvision.ops.roi_align is not usable here (not installed, or its "
                    "compiled ops do not load with this torch, e.g. a CUDA wheel on CPU torch)")
    rng = np.random.default_rng(1)
    feats = torch.tensor(rng.normal(size=(2, 3, 11, 12)))
    bidx = torch.tensor([0, 1, 1, 0, 1])
    boxes = torch.tensor(BOXES)
    ref = tv(feats, torch.cat([bidx[:, None].double(), boxes], 1), (5, 5), 1 / 8, 2, True)
    ours = roi_align(feats, boxes, bidx, 5, 1 / 8, 2, backend="torch")
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(roi_align(feats, boxes, bidx, 5, 1 / 8, 2), ref)


def test_assign_levels_mask_rcnn_rule():
    # sqrt(wh) = 224 → level 4; 112 → 3; 448 → 5; 10 → clamped to 2; 2000 → clamped to 5
    sides = [224.0, 112.0, 448.0, 10.0, 2000.0, 223.0]
    boxes = torch.tensor([[0.0, 0.0, s, s] for s in sides])
    assert assign_levels(boxes, 2, 5).tolist() == [4, 3, 5, 2, 5, 3]
    assert assign_levels(boxes, 3, 6, canonical_size=112.0).tolist() == [5, 4, 6, 3, 6, 4]


def test_multiscale_pools_each_box_from_its_level():
    feats = [torch.randn(1, 2, 64 // s, 64 // s, dtype=torch.float64) for s in (8, 16, 32, 64)]
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 60.0, 60.0]], dtype=torch.float64)
    bidx = torch.tensor([0, 0])
    pool = MultiScaleRoIAlign([8, 16, 32, 64], 4, 2, canonical_size=36.0)
    lv = assign_levels(boxes, 3, 6, 36.0).tolist()
    assert lv == [3, 4]
    out = pool(feats, boxes, bidx)
    for i, level in enumerate(lv):
        s = 2**level
        ref = roi_align(feats[level - 3], boxes[i : i + 1], bidx[:1], 4, 1 / s, 2)
        torch.testing.assert_close(out[i : i + 1], ref)


# ------------------------------------------------------------------------ heads: shapes
def test_head_output_shapes():
    torch.manual_seed(0)
    rois, fine = torch.randn(3, 16, 14, 14), torch.randn(3, 16, 28, 28)
    g = GridHead(16, 32)(rois)
    assert g["logits"].shape == (3, 28, 28)
    gc = GridHead(16, 32, num_classes=5)(rois, classes=torch.tensor([0, 4, 2]))
    assert gc["logits"].shape == (3, 28, 28)
    d = DCTMaskHead(16, 32, fc=64)
    assert d(rois)["vectors"].shape == (3, 300)
    assert d.decode(d(rois)).shape == (3, 128, 128)
    p = PatchDCTHead(16, 32, fc=64, fine_size=28, hidden=32)
    out = p(rois, fine)
    assert out["vectors"].shape == (3, 300)
    assert out["patch_logits"].shape == (3, 3, 14, 14)
    assert out["patch_vectors"].shape == (3, 6, 14, 14)
    assert p.decode(out).shape == (3, 112, 112)
    with pytest.raises(ValueError, match="multiple of 14"):
        PatchDCTHead(16, fine_size=30)


# ------------------------------------------------------------------------ losses
def _instance_masks(k: int = 112, n: int = 3) -> np.ndarray:
    """Real COCO instance masks at k x k (box-aligned)."""
    inst = load_instances(COCO_ANN / "instances_val2017.json", k=k)
    return inst.masks[[0, 5, 11, 17][:n]]


def test_grid_loss_perfect_and_hand_cases(data_dir):
    t = torch.tensor(_instance_masks(28, 2), dtype=torch.float32)
    perfect = (t * 2 - 1) * 50.0  # logits of the right sign, |logit| = 50
    assert grid_loss(perfect, t).item() < 1e-20
    assert grid_loss(torch.zeros_like(t), t).item() == pytest.approx(math.log(2), rel=1e-6)
    # one pixel wrong with logit 0 out of 2*28*28: log 2 / 1568
    p = perfect.clone()
    p[1, 3, 4] = 0.0
    assert grid_loss(p, t).item() == pytest.approx(math.log(2) / (2 * 28 * 28), rel=1e-6)


def test_dct_loss_perfect_and_hand_cases():
    target = torch.randn(4, 300)
    assert dct_loss(target.clone(), target).item() == 0.0
    pred = target.clone()
    pred[0, 7] += 2.0
    pred[3, 0] -= 1.0
    assert dct_loss(pred, target).item() == pytest.approx(0.007 * 3.0 / 4, rel=1e-5)


def test_patch_loss_perfect_and_hand_cases(data_dir):
    vec, lab = patch_targets(torch.tensor(_instance_masks(112, 2)))
    logits = torch.nn.functional.one_hot(lab, 3).permute(0, 3, 1, 2).float() * 100.0
    ce, l1 = patch_loss(logits, vec.permute(0, 3, 1, 2), lab, vec)
    assert ce.item() < 1e-30 and l1.item() == 0.0
    ce, l1 = patch_loss(torch.zeros_like(logits), torch.zeros(2, 6, 14, 14), lab, vec)
    assert ce.item() == pytest.approx(math.log(3), rel=1e-6)
    mixed = lab == 1
    assert l1.item() == pytest.approx(float(vec[mixed].abs().mean()), rel=1e-6)
    # only mixed patches count for the vectors: changing a background patch's vector is free
    wrong = vec.permute(0, 3, 1, 2).clone()
    i, y, x = (int(v[0]) for v in torch.nonzero(lab == 0, as_tuple=True))
    wrong[i, :, y, x] = 5.0
    assert patch_loss(logits, wrong, lab, vec)[1].item() == 0.0


def test_loss_forms_and_weights_follow_each_paper(data_dir):
    # real targets (COCO instance masks at 112); predictions = targets + fixed offsets
    torch.manual_seed(0)
    masks = torch.tensor(_instance_masks(112, 3))
    boxes = torch.tensor([[0.0, 0.0, 112.0, 112.0]] * 3)
    p = PatchDCTHead(8, 8, fc=16, fine_size=28, hidden=8)
    tgt = p.targets(masks, boxes)
    out = {"vectors": tgt["vectors"] + torch.linspace(-1.0, 2.0, 300),
           "patch_vectors": torch.zeros(3, 6, 14, 14), "patch_logits": torch.zeros(3, 3, 14, 14)}
    # expected values by hand, in float64, from the official definitions:
    d = (out["vectors"] - tgt["vectors"]).double().abs()
    coarse = float(d.sum() / d.numel())  # PatchDCT: F.l1_loss, mean over all M x 300 elements
    mixed = tgt["patch_labels"] == 1
    fine = float(tgt["patch_vectors"][mixed].double().abs().mean())
    ce = math.log(3)  # zero logits
    got = p.loss(out, tgt)
    assert p.loss_weight == 1.0 == PATCHDCT_LOSS_WEIGHT  # Base-RCNN-FPN-PatchDCT.yaml
    assert got["loss_dct"].item() == pytest.approx(coarse, rel=1e-6)
    assert got["loss_patch_cls"].item() == pytest.approx(ce, rel=1e-6)
    assert got["loss_patch_vec"].item() == pytest.approx(fine, rel=1e-6)
    assert got["loss"].item() == pytest.approx(coarse + ce + fine, rel=1e-6)
    # DCT-Mask's form on the same vectors: 0.007 * sum / M = 0.007 * 300 = 2.1x the mean
    dm = DCTMaskHead(8, 8, fc=16, k=112)
    assert dm.loss_weight == 0.007 == DCT_LOSS_WEIGHT  # R50_1x_dct_300_l1_0_007_4conv.yaml
    dct = dm.loss({"vectors": out["vectors"]}, {"vectors": tgt["vectors"]})["loss"].item()
    assert dct == pytest.approx(0.007 * float(d.sum()) / 3, rel=1e-6)
    assert dct / got["loss_dct"].item() == pytest.approx(2.1, rel=1e-6)
    # both weights are options; create_head's None means the paper's value
    assert create_head("dctmask", 8).loss_weight == 0.007
    assert create_head("patchdct", 8).loss_weight == 1.0
    half = create_head("patchdct", 8, dim=8, fine_size=28, hidden=8, loss_weight=0.5)
    assert half.loss(out, tgt)["loss"].item() == pytest.approx(0.5 * got["loss"].item())
    assert create_head("dctmask", 8, loss_weight=0.01).loss_weight == 0.01
    with pytest.raises(ValueError, match="no weight"):
        create_head("grid", 8, loss_weight=1.0)
    assert coarse_l1_loss(torch.zeros(0, 300), torch.zeros(0, 300)).item() == 0.0
    # the trainer passes --loss-weight (MasksConfig.loss_weight) down to the head
    model = MaskModel("patchdct", "dct", 6, 160, fpn_channels=8, head_dim=8, loss_weight=0.5)
    assert model.head.loss_weight == 0.5


def test_head_losses_vanish_on_their_own_targets(data_dir):
    torch.manual_seed(0)
    masks = torch.tensor(_instance_masks(112, 3))
    boxes = torch.tensor([[0.0, 0.0, 112.0, 112.0]] * 3)
    d = DCTMaskHead(8, 8, fc=16)
    tgt = d.targets(masks, boxes)
    assert d.loss({"vectors": tgt["vectors"]}, tgt)["loss"].item() == 0.0
    p = PatchDCTHead(8, 8, fc=16, fine_size=28, hidden=8)
    tgt = p.targets(masks, boxes)
    out = {"vectors": tgt["vectors"], "patch_vectors": tgt["patch_vectors"].permute(0, 3, 1, 2),
           "patch_logits": torch.nn.functional.one_hot(tgt["patch_labels"], 3)
           .permute(0, 3, 1, 2).float() * 100.0}  # fmt: skip
    assert p.loss(out, tgt)["loss"].item() < 1e-6
    # decoding the perfect patch prediction: foreground patches all 1, background all 0
    got = p.decode(out) >= 0.5
    want = tgt["patch_labels"]
    assert got.reshape(3, 14, 8, 14, 8).all(4).all(2)[want == 2].all()
    assert not got.reshape(3, 14, 8, 14, 8).any(4).any(2)[want == 0].any()


# ------------------------------------------------------------------------ PatchDCT targets
def test_patch_targets_equal_patch_encode(data_dir):
    rng = np.random.default_rng(0)
    real = _instance_masks(112, 3).astype(bool)
    rand = rng.random((2, 112, 112)) < 0.5
    blocky = np.zeros((1, 112, 112), bool)
    blocky[0, 8:40, 16:64] = True  # whole foreground patches
    blocky[0, 50:53, 3:90] = True
    masks = np.concatenate([real, rand, blocky])
    vec, lab = patch_targets(torch.tensor(masks))
    ref_vec, ref_lab = patch_encode(masks)
    assert torch.equal(lab, torch.tensor(ref_lab, dtype=torch.int64))
    np.testing.assert_allclose(vec.numpy(), ref_vec, rtol=0, atol=1e-6)
    assert set(np.unique(ref_lab)) == {0, 1, 2}


def test_patch_decode_threshold_rule():
    # probabilities per patch (bg, mixed, fg) → expected class under the 0.3 rule
    cases = [((0.35, 0.60, 0.05), 0), ((0.05, 0.60, 0.35), 2), ((0.25, 0.50, 0.25), 1),
             ((0.40, 0.25, 0.35), 0), ((0.30, 0.40, 0.30), 1), ((0.10, 0.20, 0.70), 2)]  # fmt: skip
    probs = torch.tensor([c for c, _ in cases], dtype=torch.float64)
    logits = probs.log().T.reshape(1, 3, 1, len(cases))
    vec = torch.zeros(1, 6, 1, len(cases))
    vec[:, 0] = 4.0  # DC 4 → a flat 0.5 patch when mixed
    soft = patch_decode_torch(logits, vec)
    assert soft.shape == (1, 8, 8 * len(cases))
    per_patch = soft.reshape(8, len(cases), 8).permute(1, 0, 2).reshape(len(cases), -1)
    expect = {0: 0.0, 1: 0.5, 2: 1.0}
    for i, (_, cls) in enumerate(cases):
        torch.testing.assert_close(per_patch[i], torch.full((64,), expect[cls]))


# ------------------------------------------------------------------------ paste-back
def _paste_ref(soft: np.ndarray, box: np.ndarray, h: int, w: int) -> np.ndarray:
    """Straightforward bilinear paste with zero padding (detectron2 paste_masks_in_image)."""
    k = soft.shape[0]
    x0, y0, x1, y1 = box
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            py = (y + 0.5 - y0) / (y1 - y0) * k - 0.5
            px = (x + 0.5 - x0) / (x1 - x0) * k - 0.5
            yl, xl = math.floor(py), math.floor(px)
            v = 0.0
            for yy, wy in ((yl, 1 - (py - yl)), (yl + 1, py - yl)):
                for xx, wx in ((xl, 1 - (px - xl)), (xl + 1, px - xl)):
                    if 0 <= yy < k and 0 <= xx < k:
                        v += wy * wx * soft[yy, xx]
            out[y, x] = v >= 0.5
    return out


def test_paste_matches_the_numpy_reference():
    rng = np.random.default_rng(2)
    soft = rng.random((3, 7, 7))
    boxes = np.array([[2.3, 4.1, 17.8, 15.0], [-3.0, 10.0, 9.5, 29.0], [0.0, 0.0, 24.0, 30.0]])
    got = paste(soft, boxes, (30, 24))
    for i in range(3):
        np.testing.assert_array_equal(got[i], _paste_ref(soft[i], boxes[i], 30, 24))


# ------------------------------------------------------------------------ data
def test_canvas_annotations_follow_the_pixel_geometry(data_dir):
    src = COCO_ANN / "instances_val2017.json"
    canvas = canvas_annotations(src, "160:160")
    orig = json.loads(src.read_text())
    im = next(i for i in orig["images"] if i["width"] != i["height"])
    anns = [a for a in canvas["annotations"] if a["image_id"] == im["id"]]
    assert anns and all(a["iscrowd"] == 0 for a in anns)
    ours = np.stack(full_image_masks(canvas, [a["id"] for a in anns]))
    full = np.stack(full_image_masks(orig, [a["id"] for a in anns]))
    # reference: the canvas pixel centre mapped back into the source, nearest source pixel
    h, w = im["height"], im["width"]
    if w >= h:
        tw, th = round(w * 160 / h), 160
    else:
        tw, th = 160, round(h * 160 / w)
    left, top = (tw - 160) // 2, (th - 160) // 2
    ys = np.floor((np.arange(160) + 0.5 + top) * h / th).astype(int)
    xs = np.floor((np.arange(160) + 0.5 + left) * w / tw).astype(int)
    ref = full[:, ys][:, :, xs]
    inter, union = (ours & ref).sum((1, 2)), (ours | ref).sum((1, 2))
    assert (inter / union).min() > 0.7 and inter.sum() / union.sum() > 0.95
    for a, m in zip(anns, ours, strict=True):
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        assert a["bbox"] == [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
        assert a["area"] == int(m.sum())
    reasons = {r for _, r in canvas["dropped"]}
    assert reasons <= {"crowd", "rle", "cropped away"} and "crowd" in reasons
    with pytest.raises(ValueError, match="square canvas"):
        canvas_annotations(src, "160:128")


def test_jitter_boxes_are_proposal_like_and_seeded():
    gt = torch.tensor([[10.0, 20.0, 60.0, 50.0], [0.0, 0.0, 5.0, 300.0],
                       [100.0, 100.0, 101.0, 102.0]])  # fmt: skip
    a = jitter_boxes(gt, torch.Generator().manual_seed(1), size=(320, 320))
    b = jitter_boxes(gt, torch.Generator().manual_seed(1), size=(320, 320))
    c = jitter_boxes(gt, torch.Generator().manual_seed(2), size=(320, 320))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (box_iou_pairs(a, gt) >= 0.5).all() and not torch.equal(a, gt)
    assert (a >= 0).all() and (a <= 320).all()


# ------------------------------------------------------------------------ evaluation
def test_evaluator_perfect_and_imperfect(data_dir):
    coco = canvas_annotations(COCO_ANN / "instances_val2017.json", "160:160")
    ids = sorted({a["image_id"] for a in coco["annotations"]})[:3]
    def run(spoil: bool) -> dict[str, float]:
        ev = MaskEvaluator(coco)
        for iid in ids:
            anns = [a for a in coco["annotations"] if a["image_id"] == iid]
            truth = np.stack(full_image_masks(coco, [a["id"] for a in anns])).astype(bool)
            pred = truth.copy()
            if spoil:
                pred[0] = False  # one empty mask per image: IoU 0
            ev.add(iid, pred, truth, np.array([a["id"] for a in anns]),
                   np.array([a["category_id"] for a in anns]))  # fmt: skip
        return ev.summary()

    good = run(False)
    assert good["AP"] == pytest.approx(1.0) and good["AP50"] == pytest.approx(1.0)
    assert good["mask_iou"] == 1.0 and good["boundary_iou"] == 1.0 and good["images"] == 3
    bad = run(True)
    n = bad["instances"]
    assert bad["mask_iou"] == pytest.approx((n - 3) / n)
    assert bad["AP"] < 1.0


# ------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def mask_stores(tmp_path_factory, data_dir):
    """DCT stores (dctnet-24, 128 x 128 canvas) of 4 train / 2 val COCO-mini images, and an
    RGB store of the training images."""
    root = tmp_path_factory.mktemp("masks")
    out = {}
    for split, n in (("train", 4), ("val", 2)):
        paths = [str(p) for p in sorted((COCO_IMG / f"{split}2017").glob("*.jpg"))[:n]]
        src = Sources(paths, [0] * n, ["coco"])
        out[split] = root / f"dct-{split}.zarr"
        encode_images(src, out[split], EncodeOptions("dctnet-24", "pixels", "128:128"), workers=0)
        if split == "train":
            from freqdata.trainers.rgb import encode_rgb

            out["rgb"] = root / "rgb-train.zarr"
            encode_rgb(src, out["rgb"], "128:128")
    return out


def _args(stores, head: str, out, *extra: str) -> list[str]:
    return ["train", "masks", "--store", str(stores["train"]),
            "--annotations", str(COCO_ANN / "instances_train2017.json"),
            "--val-store", str(stores["val"]),
            "--val-annotations", str(COCO_ANN / "instances_val2017.json"),
            "--head", head, "--smoke", "--batch-size", "2", "--fpn-channels", "16",
            "--head-dim", "16", "--patch-hidden", "16", "--fine-size", "28",
            "--max-instances", "4", "--out", str(out), *extra]  # fmt: skip


@pytest.mark.parametrize("head", ["grid", "dctmask", "patchdct"])
def test_cli_smoke_every_head(mask_stores, tmp_path, head):
    r = runner.invoke(app, _args(mask_stores, head, tmp_path / head, "--epochs", "1"))
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    logged = [json.loads(x) for x in (tmp_path / head / "log.jsonl").read_text().splitlines()]
    assert lines == logged and [x["event"] for x in logged] == ["start", "epoch", "end"]
    e = logged[1]
    for k in ("train_loss", "AP", "AP50", "AP75", "mask_iou", "boundary_iou", "samples_per_s"):
        assert np.isfinite(e[k]), k
    assert 0 <= e["AP"] <= 1 and 0 <= e["mask_iou"] <= 1 and e["val_images"] <= 2
    assert e["train_images"] == 4  # 2 steps of 2 images
    assert (tmp_path / head / "last.pt").exists()


def test_cli_smoke_rgb_and_usage_errors(mask_stores, tmp_path):
    args = _args(mask_stores, "grid", tmp_path / "rgb", "--epochs", "1", "--input", "rgb",
                 "--quiet")  # fmt: skip
    args[3] = str(mask_stores["rgb"])
    i = args.index("--val-store")
    del args[i : i + 4]  # no validation
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, _args(mask_stores, "mask-rcnn", tmp_path / "x"))
    assert r.exit_code == 2 and "head must be one of" in r.output
    r = runner.invoke(app, _args(mask_stores, "grid", tmp_path / "x", "--input", "rgb"))
    assert r.exit_code == 2 and "dct store" in r.output


def test_resume_equals_uninterrupted(mask_stores, tmp_path):
    def cfg(out: str, **kw) -> MasksConfig:
        return MasksConfig(
            store=str(mask_stores["train"]), annotations=str(COCO_ANN / "instances_train2017.json"),
            val_store=str(mask_stores["val"]),
            val_annotations=str(COCO_ANN / "instances_val2017.json"), head="dctmask",
            fpn_channels=16, head_dim=16, max_instances=4, batch_size=2, epochs=2, smoke=True,
            seed=3, out=str(tmp_path / out), **kw,
        )  # fmt: skip

    full = train_masks(cfg("full"))


    with pytest.raises(StopRun):
        train_masks(cfg("cut"), on_log=stop_after_first_epoch)
    resumed = train_masks(cfg("cut", resume=True))
    for k in ("train_loss", "AP", "mask_iou", "boundary_iou", "lr"):
        assert full["final"][k] == pytest.approx(resumed["final"][k], rel=1e-6, abs=1e-9), k
    other = MasksConfig(**{**cfg("cut", resume=True).to_dict(), "head": "grid"})
    with pytest.raises(ValueError, match="different head"):
        train_masks(other)


def test_mask_data_batches(mask_stores, data_dir):
    d = MaskData(mask_stores["train"], COCO_ANN / "instances_train2017.json", max_instances=3)
    b = d.batch([0, 1])
    assert b.images.shape == (2, 24, 16, 16) and b.images.dtype == torch.float32
    g = b.boxes.shape[0]
    assert b.masks.shape == (g, 128, 128) and b.batch_index.shape == (g,) and g <= 6
    # every box is the tight box of its mask
    for m, box in zip(b.masks.numpy(), b.boxes.numpy(), strict=True):
        ys, xs = np.nonzero(m)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # images are the store's cubes (one bulk read) normalized with the chosen statistics
    for j, p in enumerate([0, 1]):
        cube = torch.from_numpy(d.store.cube(d.rows[p])).float()
        torch.testing.assert_close(b.images[j] * d.std + d.mean, cube, rtol=0, atol=1e-3)
    v = MaskData(mask_stores["val"], COCO_ANN / "instances_val2017.json",
                 stats_store=mask_stores["train"])  # fmt: skip
    assert torch.equal(v.mean, d.mean) and torch.equal(v.std, d.std)
    assert not torch.equal(MaskData(mask_stores["val"], COCO_ANN / "instances_val2017.json").mean,
                           d.mean)  # fmt: skip
