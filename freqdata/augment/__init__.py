"""Training-grade augmentation of DCT batches, exact and batched on the device (torch).

One idea per module (docs/loader.md, "Augmentation", states every exactness contract):

* :mod:`~freqdata.augment.sampling` — torchvision's random box draws (RandomResizedCrop,
  RandomErasing) from a seeded CPU ``torch.Generator``;
* :mod:`~freqdata.augment.resample` — resized crop at pixel granularity in the DCT domain
  (:func:`resized_crop`, :class:`RandomResizedCrop`);
* :mod:`~freqdata.augment.geometric` — flips, transpose, rot90, block translation;
* :mod:`~freqdata.augment.colour` — brightness, contrast, saturation, hue, sharpness;
* :mod:`~freqdata.augment.mix` — mixup, block-aligned cutmix, random erasing;
* :mod:`~freqdata.augment.policy` — RandAugment / TrivialAugmentWide over the exact ops;
* :mod:`~freqdata.augment.pipeline` — :class:`TrainAugment`, the recipes (standard,
  randaugment, evaluation, mixup / cutmix) as one device step on a loader's batches;
* :mod:`~freqdata.augment.layout` — the coefficient planes the separable maps act on;
* :mod:`~freqdata.augment.pixels` — the same resized crop on *pixel* batches (the RGB arm of
  a comparison: same boxes, same kernel);
* :mod:`~freqdata.augment.onthefly` — the on-the-fly reference: JPEGs decoded in CPU
  workers, random-resized crop + flip on the pixels, then the DCT (no store).
* :mod:`~freqdata.augment.targets` — boxes, instance masks and label maps moved with a
  resized crop + flip (for detection, mask and segmentation targets).

Every function takes raw coefficients ``(B, C, Hb, Wb)`` (a store's values, before
:func:`freqdata.transforms.normalize`) and the store's channel names.
"""

from freqdata.augment.colour import adjust_colour, sharpen
from freqdata.augment.geometric import flip, rot90, translate_blocks, transpose
from freqdata.augment.mix import RandomErasing, cutmix, erase, mixup
from freqdata.augment.pipeline import TrainAugment
from freqdata.augment.policy import RandAugment, TrivialAugmentWide
from freqdata.augment.resample import RandomResizedCrop, resized_crop
from freqdata.augment.sampling import erasing_params, resized_crop_params

__all__ = [
    "RandAugment",
    "RandomErasing",
    "RandomResizedCrop",
    "TrainAugment",
    "TrivialAugmentWide",
    "adjust_colour",
    "cutmix",
    "erase",
    "erasing_params",
    "flip",
    "mixup",
    "resized_crop",
    "resized_crop_params",
    "rot90",
    "sharpen",
    "translate_blocks",
    "transpose",
]
