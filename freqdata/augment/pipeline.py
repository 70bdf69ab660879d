"""The training recipes as one device-side step: store batch → augmented, normalized batch.

:class:`TrainAugment` extends :class:`freqdata.transforms.DeviceAugment` (transport decode,
native chroma upsampled to the luma grid, normalization with the store's statistics) with
the exact DCT-domain augmentation of this package, on raw coefficients before normalization:

* ``recipe="standard"`` (training): :class:`~freqdata.augment.resample.RandomResizedCrop`
  to ``size`` blocks (torchvision's boxes, drawn inside each sample's image: a ragged
  store's batch gives ``shapes``/``origins``, so a sample smaller than the loader's
  ``crop_blocks`` is never sampled in its zero padding) + horizontal flip with ``flip_p``;
* ``recipe="randaugment"``: the same, then
  :class:`~freqdata.augment.policy.RandAugment` (2 ops, magnitude 9) on the crops;
* ``recipe="none"`` or ``train=False`` (evaluation): the centre box of ``eval_crop`` of the
  shorter side (torchvision's ``Resize(S)`` + ``CenterCrop(eval_crop * S)`` as one box,
  0.875 = 224 / 256), resized to ``size``;
* ``mix="mixup"`` / ``"cutmix"`` (training): after normalization, with ``num_classes``;
  targets become soft ``(B, num_classes)`` float32.

Every random draw has its own seeded generator (``seed``), so a run is reproducible.
"""

from __future__ import annotations

from typing import Any

import torch

from freqdata.augment.mix import cutmix, mixup
from freqdata.augment.policy import RandAugment
from freqdata.augment.resample import RandomResizedCrop, resized_crop
from freqdata.augment.sampling import RRC_RATIO, RRC_SCALE
from freqdata.dct import BLOCK
from freqdata.errors import UsageError
from freqdata.transforms import DeviceAugment, channel_info, random_hflip

__all__ = ["MIXES", "RECIPES", "TrainAugment", "centre_boxes", "image_sizes"]

RECIPES = ("none", "standard", "randaugment")
MIXES = (None, "mixup", "cutmix")


def image_sizes(batch: dict[str, Any], grid: tuple[int, int]) -> torch.Tensor:
    """``(B, 2)`` int64 pixel ``(height, width)`` of each sample's image inside the batch grid.

    The whole grid, or for a ragged store's cropped batch (``shapes``, ``origins``) the part
    of the grid the sample covers (the rest is the loader's zero padding).
    """
    b = len(batch["labels"])
    full = torch.tensor(grid, dtype=torch.int64).expand(b, 2)
    if "shapes" not in batch:
        return full * BLOCK
    covered = batch["shapes"].cpu() - batch["origins"].cpu()
    return torch.minimum(covered, full).clamp(min=1) * BLOCK


def centre_boxes(sizes: torch.Tensor, fraction: float) -> torch.Tensor:
    """``(B, 4)`` centred square boxes of side ``round(fraction * shorter side)``."""
    side = torch.round(sizes.min(1).values.double() * fraction).to(torch.int64).clamp(min=1)
    top = (sizes[:, 0] - side) // 2
    left = (sizes[:, 1] - side) // 2
    return torch.stack([top, left, side, side], 1)


class TrainAugment(DeviceAugment):
    """Store batch dict → ``(x (B, C, *size) float32 normalized, targets)`` on ``device``.

    ``store``: the :class:`~freqdata.store.ImageStore` the loader reads (its channel names,
    statistics and chroma indices); ``size``: output blocks; ``recipe``, ``mix``,
    ``eval_crop``: module docstring; ``kernel``, ``scale``, ``ratio``: of the resized crop;
    ``transport``: the loader's, if any; ``box_step``: training boxes on a ``box_step``-pixel
    lattice (:func:`~freqdata.augment.sampling.draw_boxes`: the same boxes as an RGB arm at
    ``1 / box_step`` of this resolution); ``keep``: channel names to return (default all):
    a store holding more channels than the model reads crops with all of them (fewer
    unstored frequencies folded in) and hands on the model's. ``targets``: labels ``(B,)``
    int64, or soft ``(B, num_classes)`` float32 with a ``mix``.
    """

    def __init__(
        self,
        store: Any,
        device: torch.device | str = "cpu",
        *,
        size: tuple[int, int] = (56, 56),
        train: bool = True,
        recipe: str = "standard",
        mix: str | None = None,
        num_classes: int | None = None,
        mix_alpha: float = 1.0,
        flip_p: float = 0.5,
        eval_crop: float = 0.875,
        kernel: str = "triangle",
        scale: tuple[float, float] = RRC_SCALE,
        ratio: tuple[float, float] = RRC_RATIO,
        seed: int = 0,
        transport: Any = None,
        box_step: int = 1,
        keep: list[str] | None = None,
    ) -> None:
        if recipe not in RECIPES:
            raise UsageError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
        if mix not in MIXES:
            raise UsageError(f"unknown mix {mix!r}: choose mixup, cutmix or None")
        if mix is not None and not num_classes:
            raise UsageError("mixup / cutmix need num_classes")
        if not 0 < eval_crop <= 1:
            raise UsageError(f"eval_crop must be in (0, 1], got {eval_crop}")
        random = train and recipe != "none"
        super().__init__(
            store, device, train=random, flip_p=flip_p, seed=seed, transport=transport
        )
        self.size = (int(size[0]), int(size[1]))
        self.names = channel_info(store.channel_names)
        self.kernel, self.eval_crop = kernel, float(eval_crop)
        self.rrc = RandomResizedCrop(
            self.names, self.size, scale=scale, ratio=ratio, kernel=kernel, seed=seed,
            step=box_step,
        )  # fmt: skip
        self.policy = RandAugment(self.names, seed=seed + 1) if recipe == "randaugment" else None
        self.mix = mix if random else None
        self.num_classes, self.mix_alpha = num_classes, mix_alpha
        self.mix_generator = torch.Generator().manual_seed(seed + 2)
        self.keep: list[int] | None = None
        if keep is not None:
            names = list(store.channel_names)
            missing = [n for n in keep if n not in names]
            if missing:
                raise UsageError(f"the store does not hold channels {missing[:4]}")
            self.keep = [names.index(n) for n in keep]

    def __call__(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.raw(batch)
        sizes = image_sizes(batch, tuple(x.shape[-2:]))
        if self.train:
            x, _ = self.rrc(x, sizes)
            if self.flip_p > 0:
                x, _ = random_hflip(x, self.odd_u, self.flip_p, self.generator)
            if self.policy is not None:
                x, _ = self.policy(x)
        else:
            x = resized_crop(x, self.names, centre_boxes(sizes, self.eval_crop), self.size,
                             self.kernel)  # fmt: skip
        x = self.normalize(x)
        if self.keep is not None:
            x = x[:, self.keep]
        labels = batch["labels"].to(self.device, non_blocking=True)
        if self.mix == "mixup":
            x, labels, _ = mixup(x, labels, self.num_classes, self.mix_alpha, self.mix_generator)
        elif self.mix == "cutmix":
            x, labels, _ = cutmix(x, labels, self.num_classes, self.mix_alpha, self.mix_generator)
        return x, labels

