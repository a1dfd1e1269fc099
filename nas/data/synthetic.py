"""Small random but learnable images for tests: each class is a smooth prototype plus pixel noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nas.data.base import TensorImageDataModule
from nas.data.batching import Split
from nas.errors import check


class SyntheticDataModule(TensorImageDataModule):
    """Class prototypes (random 4x4 patterns upsampled to `image_size`) + Gaussian noise, as uint8.

    Prototypes are smooth and differ in colour and layout, so even a tiny conv net with global
    pooling separates the classes; `noise` (in [0, 1] pixel units) sets how hard that is.
    Everything, prototypes included, follows from `seed`.
    """

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 8,
        channels: int = 3,
        train_size: int = 512,
        val_size: int = 256,
        test_size: int = 256,
        noise: float = 0.2,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        seed: int = 0,
        pad: int = 0,
        flip: bool = False,
        train_subset: int | None = None,
        cutout: int = 0,
    ) -> None:
        check(num_classes >= 2, f"num_classes={num_classes}: expected >= 2")
        check(image_size >= 1, f"image_size={image_size}: expected >= 1")
        check(channels >= 1, f"channels={channels}: expected >= 1")
        check(train_size >= 1, f"train_size={train_size}: expected >= 1")
        check(test_size >= 1, f"test_size={test_size}: expected >= 1")
        check(noise >= 0, f"noise={noise}: expected >= 0 (std of the pixel noise, [0, 1] units)")
        super().__init__(
            num_classes=num_classes,
            in_channels=channels,
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
        self.train_size = train_size
        self.test_size = test_size
        self.noise = noise
        self.save_hyperparameters()

    def prototypes(self) -> torch.Tensor:
        """The class means, float [num_classes, C, H, W] in [0, 1]."""
        return self._prototypes(torch.Generator().manual_seed(self.seed))

    def _prototypes(self, generator: torch.Generator) -> torch.Tensor:
        coarse = torch.rand(self.num_classes, self.in_channels, 4, 4, generator=generator)
        size = (self.image_size, self.image_size)
        return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)

    def _sample(self, prototypes: torch.Tensor, size: int, generator: torch.Generator) -> Split:
        # Classes in turn (0, 1, ..., 0, 1, ...) so every split is balanced, then shuffled.
        labels = torch.arange(size) % self.num_classes
        labels = labels[torch.randperm(size, generator=generator)]
        noise = torch.randn(
            size, self.in_channels, self.image_size, self.image_size, generator=generator
        )
        pixels = prototypes[labels] + self.noise * noise
        return Split((pixels * 255).round().clamp(0, 255).to(torch.uint8), labels)

    def _load(self) -> tuple[Split, Split, Split]:
        # Prototypes are drawn first from the stream, so split sizes never change them.
        generator = torch.Generator().manual_seed(self.seed)
        prototypes = self._prototypes(generator)
        sizes = (self.train_size, self.val_size, self.test_size)
        splits = [self._sample(prototypes, n, generator) for n in sizes]
        return splits[0], splits[1], splits[2]
