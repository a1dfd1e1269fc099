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
from nas.data.contract import check_datamodule
from nas.data.digits import DigitsDataModule
from nas.data.fashion_mnist import FashionMNISTDataModule, read_idx
from nas.data.image_folder import ImageFolderDataModule
from nas.data.synthetic import SyntheticDataModule
from nas.data.tensor_file import TensorFileDataModule

DATAMODULES: dict[str, type[TensorImageDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "fashion_mnist": FashionMNISTDataModule,
    "digits": DigitsDataModule,
    "synthetic": SyntheticDataModule,
}
# The user's own data (a folder of images, a file of arrays): their root or path has no default.
OWN_DATA: dict[str, type[TensorImageDataModule]] = {
    "image_folder": ImageFolderDataModule,
    "tensors": TensorFileDataModule,
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
    "ImageFolderDataModule",
    "OWN_DATA",
    "Split",
    "SyntheticDataModule",
    "TensorBatchDataset",
    "TensorFileDataModule",
    "TensorImageDataModule",
    "augment",
    "channel_stats",
    "check_datamodule",
    "read_idx",
    "split_off",
]
