"""Instance-mask heads on RoI features: Mask R-CNN grid, DCT-Mask, PatchDCT (+ losses, decoding).

Every head has the same interface (``rois`` = RoIAlign features ``(M, C, 14, 14)``):

* ``head(rois, fine=None, classes=None)`` → dict of raw outputs;
* ``head.targets(full_masks, boxes)`` → dict of training targets, built on the fly from the
  image masks ``(M, H, W)`` (uint8 / bool, one per box) and the (jittered) boxes ``(M, 4)``
  xyxy in image pixels with :func:`freqdata.masks.crop_resize_torch` (ROIAlign, aligned,
  ``sampling_ratio`` 2) — the batched mask encoder;
* ``head.loss(outputs, targets)`` → dict of scalar losses, ``"loss"`` = the total;
* ``head.decode(outputs)`` → soft masks ``(M, K, K)`` float32 over the box, to be pasted into
  the image and thresholded at 0.5 (:func:`freqdata.masks.paste_masks`).

Heads (Table in docs/mask-heads.md):

* :class:`GridHead` (Mask R-CNN, He et al. 2017): 4 conv 3x3 (``dim``) + ReLU → deconv 2x2/2
  + ReLU → 1x1 conv → ``(M, num_classes, 28, 28)`` logits (``num_classes=1``:
  class-agnostic; otherwise the channel of ``classes`` is used). Loss: per-pixel BCE with
  logits, mean over pixels and instances, against ``crop(mask, box, 28) >= 0.5``.
  Decode: sigmoid, ``K = 28``.
* :class:`DCTMaskHead` (Shen et al., CVPR 2021): 4 conv 3x3 (``dim``) → FC 1024 → FC 1024
  → ``n`` (300). Target: :func:`freqdata.masks.torch_targets` (crop to ``k`` x ``k`` = 128,
  ``>= 0.5``, first 300 zigzag DCT coefficients). Loss: ``w · Σ_dims |pred − target|``
  summed over instances and divided by their number, ``w = 0.007``
  (:data:`DCT_LOSS_WEIGHT`: ``MASK_LOSS_PARA`` of DCT-Mask's official
  ``R50_1x_dct_300_l1_0_007_4conv.yaml``, aliyun/DCT-Mask). Decode:
  :func:`freqdata.masks.dct_decode_torch` at ``k`` (128).
* :class:`PatchDCTHead` (Wen et al., ICLR 2023): a :class:`DCTMaskHead` with ``k = 112``
  (as the official code's ``MASK_SIZE``) whose decoded 112x112 mask is refined patch-wise.
  The mask is resized (nearest) to the fine RoI grid ``fine_size`` (42 in the paper),
  mapped by a 3x3 conv (1 → C) + ReLU, added to the fine RoI features (RoIAlign of
  ``fine_size`` from the finest FPN level), 2 conv 3x3 (C) + ReLU, a ``r x r`` stride-``r``
  conv (``r = fine_size / 14``, C → ``hidden``) + ReLU and a 3x3 conv (``hidden``) + ReLU
  give a 14x14 map, one cell per 8x8 patch of the 112 mask; 1x1 convs predict the 3-class
  patch logits (0 background / 1 mixed / 2 foreground) and the 6-d patch DCT vectors
  (zigzag (0,0), (0,1), (1,0), (2,0), (1,1), (0,2)). Targets: :func:`patch_targets`
  (:func:`freqdata.masks.patch_encode`'s conventions, batched in torch). Loss, as the
  official code (olivia-w12/PatchDCT, ``MaskRCNNPatchDCTHead.mask_rcnn_dct_loss`` with
  ``DCT_LOSS_TYPE: l1``): ``w · (L1(coarse vectors) + CE(patches) + L1(mixed patch
  vectors))``, the coarse L1 a **mean over elements** (``F.l1_loss``, not DCT-Mask's
  ``0.007 · sum / M``, which is 2.1x it for 300-d vectors), the CE a mean over all patches,
  the patch L1 a mean over the elements of the mixed patches only; ``w = 1``
  (:data:`PATCHDCT_LOSS_WEIGHT`: ``MASK_LOSS_PARA`` of the official
  ``Base-RCNN-FPN-PatchDCT.yaml``). Decode (:func:`patch_decode_torch`): softmax; a
  background or foreground probability above 0.3 gets +1 (the official code's
  ``PATCH_THRESHOLD`` rule: a patch is mixed only when neither exceeds 0.3; when both
  do, the larger wins); background → 0, foreground → 1, mixed → inverse DCT of
  its 6 coefficients.

Convs: Kaiming normal (fan-out) init, zero bias (detectron2's ``c2_msra_fill``); the grid
predictor and the PatchDCT classifier / regressor ``N(0, 0.001)``, zero bias (so the patch
CE starts at log 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from freqdata.errors import UsageError
from freqdata.masks.patchdct import BACKGROUND, FOREGROUND, MIXED, _patch_basis
from freqdata.masks.torch_ops import (
    crop_resize_torch,
    dct_decode_torch,
    dct_encode_torch,
    torch_targets,
)

__all__ = [
    "DCT_LOSS_WEIGHT",
    "HEADS",
    "PATCHDCT_LOSS_WEIGHT",
    "DCTMaskHead",
    "GridHead",
    "PatchDCTHead",
    "coarse_l1_loss",
    "create_head",
    "patch_decode_torch",
    "patch_targets",
]

HEADS = ("grid", "dctmask", "patchdct")
SAMPLING_RATIO = 2  # of the target crops (ROIAlign samples per cell and axis)
DCT_LOSS_WEIGHT = 0.007  # DCT-Mask's MASK_LOSS_PARA (R50_1x_dct_300_l1_0_007_4conv.yaml)
PATCHDCT_LOSS_WEIGHT = 1.0  # PatchDCT's MASK_LOSS_PARA (Base-RCNN-FPN-PatchDCT.yaml)
PATCH = 8  # PatchDCT patch side
PATCH_DIMS = 6  # PatchDCT vector length
PATCH_THRESHOLD = 0.3  # PatchDCT inference rule
Out = dict[str, torch.Tensor]  # outputs / targets / losses of a head


def _init_conv(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _tower(cin: int, dim: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else dim, dim, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _binary_crops(full_masks: torch.Tensor, boxes: torch.Tensor, k: int) -> torch.Tensor:
    """``crop_resize_torch(masks, boxes, k) >= 0.5`` → ``(M, k, k)`` float32 {0, 1}."""
    soft = crop_resize_torch(full_masks, boxes.float(), k, sampling_ratio=SAMPLING_RATIO)
    return (soft >= 0.5).to(torch.float32)


class GridHead(nn.Module):
    """Mask R-CNN's mask head: ``(M, cin, 14, 14)`` → ``{"logits": (M, 28, 28)}`` (module
    docstring). ``num_classes > 1``: class-specific; pass ``classes`` (M,) in 0..num_classes-1."""

    k = 28

    def __init__(self, cin: int, dim: int = 256, num_convs: int = 4, num_classes: int = 1) -> None:
        super().__init__()
        self.tower = _tower(cin, dim, num_convs)
        self.deconv = nn.ConvTranspose2d(dim, dim, 2, stride=2)
        self.predictor = nn.Conv2d(dim, num_classes, 1)
        self.num_classes = num_classes
        self.apply(_init_conv)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(
        self, rois: torch.Tensor, fine: torch.Tensor | None = None,
        classes: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        x = F.relu(self.deconv(self.tower(rois)))
        logits = self.predictor(x)  # (M, num_classes, 28, 28)
        if self.num_classes == 1:
            return {"logits": logits[:, 0]}
        if classes is None:
            raise UsageError("a class-specific grid head needs the instances' classes")
        return {"logits": logits[torch.arange(logits.shape[0]), classes.to(torch.int64)]}

    def targets(self, full_masks: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"grid": _binary_crops(full_masks, boxes, self.k)}

    def loss(self, out: Out, tgt: Out) -> Out:
        loss = grid_loss(out["logits"], tgt["grid"])
        return {"loss": loss, "loss_mask": loss}

    def decode(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.sigmoid(out["logits"].float())


def grid_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mask R-CNN's loss: mean per-pixel BCE of logits ``(M, K, K)`` against {0, 1} targets
    (0 for M = 0)."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits.float(), target)


def dct_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: float = DCT_LOSS_WEIGHT
) -> torch.Tensor:
    """DCT-Mask's loss: ``weight · Σ |pred − target| / M`` for ``(M, n)`` vectors (0 for M = 0)."""
    m = max(pred.shape[0], 1)
    return weight * (pred.float() - target).abs().sum() / m


def coarse_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PatchDCT's coarse-vector loss: ``mean |pred − target|`` over all elements of ``(M, n)``
    (``F.l1_loss``; 0 for M = 0)."""
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    return F.l1_loss(pred.float(), target)


class DCTMaskHead(nn.Module):
    """DCT-Mask's head: ``(M, cin, 14, 14)`` → ``{"vectors": (M, n)}`` (module docstring);
    ``k``: the mask grid of targets and decoding (128); ``loss_weight``: ``w`` of
    :func:`dct_loss`."""

    def __init__(
        self, cin: int, dim: int = 256, num_convs: int = 4, fc: int = 1024, n: int = 300,
        k: int = 128, roi_size: int = 14, loss_weight: float = DCT_LOSS_WEIGHT,
    ) -> None:  # fmt: skip
        super().__init__()
        self.tower = _tower(cin, dim, num_convs)
        self.fc = nn.Sequential(
            nn.Linear(dim * roi_size * roi_size, fc), nn.ReLU(inplace=True),
            nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Linear(fc, n),
        )  # fmt: skip
        self.n, self.k = n, k
        self.loss_weight = loss_weight
        self.apply(_init_conv)

    def forward(
        self, rois: torch.Tensor, fine: torch.Tensor | None = None,
        classes: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        return {"vectors": self.fc(self.tower(rois).flatten(1))}

    def targets(self, full_masks: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"vectors": torch_targets(full_masks, boxes.float(), self.k, self.n,
                                         sampling_ratio=SAMPLING_RATIO)}  # fmt: skip

    def loss(self, out: Out, tgt: Out) -> Out:
        loss = dct_loss(out["vectors"], tgt["vectors"], self.loss_weight)
        return {"loss": loss, "loss_dct": loss}

    def decode(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        return dct_decode_torch(out["vectors"].float(), self.k)


# --------------------------------------------------------------------------- PatchDCT


def _basis(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(6, 64)``: patch DCT rows at the first 6 zigzag positions (freqdata.masks.patchdct)."""
    return torch.tensor(_patch_basis(PATCH, PATCH_DIMS), dtype=dtype, device=device)


def _to_patches(x: torch.Tensor) -> torch.Tensor:
    """``(M, K, K)`` → ``(M, K/8, K/8, 64)`` row-major 8x8 patches."""
    m, h, w = x.shape
    p = PATCH
    x = x.reshape(m, h // p, p, w // p, p).permute(0, 1, 3, 2, 4)
    return x.reshape(m, h // p, w // p, p * p)


def _from_patches(x: torch.Tensor) -> torch.Tensor:
    """``(M, Hp, Wp, 64)`` → ``(M, 8 Hp, 8 Wp)``."""
    m, hp, wp, _ = x.shape
    p = PATCH
    return x.reshape(m, hp, wp, p, p).permute(0, 1, 3, 2, 4).reshape(m, hp * p, wp * p)


def patch_targets(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PatchDCT targets of binary masks ``(M, K, K)`` (bool or {0, 1}; K a multiple of 8)
    → ``(vectors (M, K/8, K/8, 6) float32, labels (M, K/8, K/8) int64)``: the torch twin of
    :func:`freqdata.masks.patch_encode` (labels 0 / 1 / 2 from integer pixel counts; vectors
    = orthonormal 8x8 DCT at zigzag (0,0), (0,1), (1,0), (2,0), (1,1), (0,2), computed in
    float64; foreground patches exactly ``[8, 0, 0, 0, 0, 0]``), on the masks' device."""
    if masks.dim() != 3 or masks.shape[1] % PATCH or masks.shape[2] % PATCH:
        raise UsageError(
            f"masks must be (M, K, K) with K a multiple of 8, got {tuple(masks.shape)}"
        )
    binary = masks if masks.dtype == torch.bool else masks >= 0.5
    blocks = _to_patches(binary)
    counts = blocks.sum(-1, dtype=torch.int64)
    labels = torch.full_like(counts, MIXED)
    labels[counts == 0] = BACKGROUND
    labels[counts == PATCH * PATCH] = FOREGROUND
    vectors = blocks.to(torch.float64) @ _basis(masks.device, torch.float64).T
    full = labels == FOREGROUND
    vectors[full] = 0.0
    vectors[..., 0][full] = float(PATCH)
    return vectors.to(torch.float32), labels


def patch_decode_torch(
    logits: torch.Tensor, vectors: torch.Tensor, threshold: float = PATCH_THRESHOLD
) -> torch.Tensor:
    """PatchDCT inference: patch logits ``(M, 3, Hp, Wp)`` and vectors ``(M, 6, Hp, Wp)`` →
    soft masks ``(M, 8 Hp, 8 Wp)`` float32. Class = argmax of the softmax after adding 1 to
    the background / foreground probabilities that exceed ``threshold``; background → 0,
    foreground → 1, mixed → inverse 8x8 DCT of the 6 coefficients (others 0), not clipped."""
    prob = torch.softmax(logits.float(), dim=1)
    for c in (BACKGROUND, FOREGROUND):
        prob[:, c] = prob[:, c] + (prob[:, c] > threshold).to(prob.dtype)
    label = prob.argmax(1)  # (M, Hp, Wp)
    vec = vectors.float().permute(0, 2, 3, 1)  # (M, Hp, Wp, 6)
    pix = vec @ _basis(vec.device, vec.dtype)  # (M, Hp, Wp, 64)
    pix = torch.where((label == BACKGROUND)[..., None], torch.zeros_like(pix), pix)
    pix = torch.where((label == FOREGROUND)[..., None], torch.ones_like(pix), pix)
    return _from_patches(pix)


class PatchDCTHead(nn.Module):
    """PatchDCT: :class:`DCTMaskHead` (``k=112``) + one patch-refinement stage (module
    docstring). ``forward(rois (M, cin, 14, 14), fine (M, cin, F, F))`` →
    ``{"vectors": (M, 300), "patch_logits": (M, 3, 14, 14), "patch_vectors": (M, 6, 14, 14)}``
    with ``F = fine_size`` (a multiple of 14); ``loss_weight``: ``w`` of the loss (module
    docstring)."""

    k = 112

    def __init__(
        self, cin: int, dim: int = 256, num_convs: int = 4, fc: int = 1024, n: int = 300,
        fine_size: int = 42, hidden: int = 256, loss_weight: float = PATCHDCT_LOSS_WEIGHT,
    ) -> None:  # fmt: skip
        super().__init__()
        grid = self.k // PATCH
        if fine_size % grid:
            raise UsageError(f"fine_size must be a multiple of {grid}, got {fine_size}")
        r = fine_size // grid
        self.dct = DCTMaskHead(cin, dim, num_convs, fc, n, k=self.k)
        self.fine_size = fine_size
        self.loss_weight = loss_weight
        self.reshape = nn.Conv2d(1, cin, 3, padding=1)
        self.fusion = _tower(cin, cin, 2)
        self.downsample = nn.Sequential(
            nn.Conv2d(cin, hidden, r, stride=r), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.classifier = nn.Conv2d(hidden, 3, 1)
        self.regressor = nn.Conv2d(hidden, PATCH_DIMS, 1)
        for m in (self.reshape, self.fusion, self.downsample):
            m.apply(_init_conv)
        for m in (self.classifier, self.regressor):
            nn.init.normal_(m.weight, std=0.001)
            nn.init.zeros_(m.bias)

    def forward(
        self, rois: torch.Tensor, fine: torch.Tensor | None = None,
        classes: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        if fine is None:
            raise UsageError("PatchDCT needs the fine RoI features")
        vectors = self.dct(rois)["vectors"]
        mask = dct_decode_torch(vectors, self.k)[:, None]  # (M, 1, 112, 112)
        mask = F.interpolate(mask, size=(self.fine_size, self.fine_size), mode="nearest")
        x = self.fusion(fine + F.relu(self.reshape(mask.to(fine.dtype))))
        x = self.downsample(x)
        return {"vectors": vectors, "patch_logits": self.classifier(x),
                "patch_vectors": self.regressor(x)}  # fmt: skip

    def targets(self, full_masks: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        crops = _binary_crops(full_masks, boxes, self.k)  # = torch_targets' binarized crops
        vec, lab = patch_targets(crops)
        return {"vectors": dct_encode_torch(crops, self.dct.n),
                "patch_vectors": vec, "patch_labels": lab}  # fmt: skip

    def loss(self, out: Out, tgt: Out) -> Out:
        """The three terms, each already multiplied by ``loss_weight``; ``"loss"``: their sum."""
        w = self.loss_weight
        l_dct = w * coarse_l1_loss(out["vectors"], tgt["vectors"])
        l_cls, l_vec = patch_loss(out["patch_logits"], out["patch_vectors"],
                                  tgt["patch_labels"], tgt["patch_vectors"])  # fmt: skip
        l_cls, l_vec = w * l_cls, w * l_vec
        return {"loss": l_dct + l_cls + l_vec, "loss_dct": l_dct, "loss_patch_cls": l_cls,
                "loss_patch_vec": l_vec}  # fmt: skip

    def decode(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        return patch_decode_torch(out["patch_logits"], out["patch_vectors"])


def patch_loss(
    logits: torch.Tensor, vectors: torch.Tensor, labels: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """PatchDCT's patch losses: ``(CE, L1)`` — cross-entropy of logits ``(M, 3, Hp, Wp)``
    against labels ``(M, Hp, Wp)`` (mean over patches) and the L1 between predicted
    ``(M, 6, Hp, Wp)`` and target ``(M, Hp, Wp, 6)`` vectors over mixed patches only (mean
    over their elements; 0 when no patch is mixed)."""
    if logits.shape[0] == 0:
        zero = logits.sum() * 0.0
        return zero, zero
    ce = F.cross_entropy(logits.float(), labels)
    mixed = labels == MIXED
    pred = vectors.float().permute(0, 2, 3, 1)[mixed]
    l1 = F.l1_loss(pred, target[mixed]) if pred.shape[0] else vectors.sum() * 0.0
    return ce, l1


def create_head(
    name: str, cin: int, *, dim: int = 256, num_classes: int = 1, fine_size: int = 42,
    hidden: int = 256, loss_weight: float | None = None,
) -> nn.Module:  # fmt: skip
    """``"grid"`` | ``"dctmask"`` | ``"patchdct"`` head on ``cin``-channel RoI features.

    ``loss_weight``: the DCT-Mask / PatchDCT loss weight (``None``: each paper's official
    value, :data:`DCT_LOSS_WEIGHT` / :data:`PATCHDCT_LOSS_WEIGHT`; the grid head has none).
    """
    if name == "grid":
        if loss_weight is not None:
            raise UsageError("the grid head's loss has no weight option")
        return GridHead(cin, dim, num_classes=num_classes)
    if name == "dctmask":
        return DCTMaskHead(cin, dim, loss_weight=_or(loss_weight, DCT_LOSS_WEIGHT))
    if name == "patchdct":
        return PatchDCTHead(cin, dim, fine_size=fine_size, hidden=hidden,
                            loss_weight=_or(loss_weight, PATCHDCT_LOSS_WEIGHT))  # fmt: skip
    raise UsageError(f"head must be one of {', '.join(HEADS)}, got {name!r}")


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
