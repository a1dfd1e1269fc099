"""scikit-learn's bundled 8x8 handwritten digits: 1797 images, no download, for offline runs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from nas.data.base import TensorImageDataModule, split_off
from nas.data.batching import Split
from nas.errors import check


class DigitsDataModule(TensorImageDataModule):
    """Digits 0-9 as 1-channel images (8x8, or upsampled once at load); seeded train/val/test split.

    Defaults: no flip (digits are not mirror-symmetric), a 1-pixel crop jitter.
    """

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        seed: int = 0,
        pad: int = 1,
        flip: bool = False,
        val_size: int = 300,
        test_size: int = 300,
        train_subset: int | None = None,
        image_size: int = 8,
        cutout: int = 0,
    ) -> None:
        check(
            image_size >= 8,
            f"image_size={image_size}: expected >= 8 (the digits are 8x8; larger sizes upsample)",
        )
        check(test_size >= 1, f"test_size={test_size}: expected >= 1 test examples")
        super().__init__(
            num_classes=10,
            in_channels=1,
            image_size=image_size,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            seed=seed,
            pad=pad,
            flip=flip,
            val_size=val_size,
            train_subset=train_subset,
            cutout=cutout,
        )
        self.test_size = test_size
        self.save_hyperparameters()

    def _load(self) -> tuple[Split, Split, Split]:
        digits = load_digits()
        pixels = torch.from_numpy(digits.images).float().unsqueeze(1)  # [1797, 1, 8, 8], 0..16
        if self.image_size != 8:
            # Bilinear: smoother strokes than repeated pixels, so small convolutions see edges.
            size = (self.image_size, self.image_size)
            pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False)
        images = (pixels * (255 / 16)).round().clamp(0, 255).to(torch.uint8)
        data = Split(images, torch.from_numpy(digits.target).long())
        rest, test = split_off(data, self.test_size, self.seed, name="test_size")
        # A different seed for the second cut keeps the two permutations independent.
        train, val = split_off(rest, self.val_size, self.seed + 1)
        return train, val, test
