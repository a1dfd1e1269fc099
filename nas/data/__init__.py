"""DataModules holding every split in memory as uint8 tensors; batches augmented on the device."""

from __future__ import annotations

from nas.data.base import TensorImageDataModule, split_off
from nas.data.batching import (
    EpochShuffleSampler,
    ResumableLoader,
    ShardSampler,
    Split,
    TensorBatchDataset,
    augment,
    channel_stats,
)
from nas.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from nas.data.digits import DigitsDataModule
from nas.data.fashion_mnist import FashionMNISTDataModule, read_idx
from nas.data.synthetic import SyntheticDataModule

DATAMODULES: dict[str, type[TensorImageDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "fashion_mnist": FashionMNISTDataModule,
    "digits": DigitsDataModule,
    "synthetic": SyntheticDataModule,
}

__all__ = [
    "DATAMODULES",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DigitsDataModule",
    "EpochShuffleSampler",
    "ShardSampler",
    "ResumableLoader",
    "FashionMNISTDataModule",
    "Split",
    "SyntheticDataModule",
    "TensorBatchDataset",
    "TensorImageDataModule",
    "augment",
    "channel_stats",
    "read_idx",
    "split_off",
]
