"""CIFAR-10 and CIFAR-100 through torchvision's readers, split 45k train / 5k validation / 10k test."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torchvision.datasets.utils import extract_archive

from nas.data.base import TensorImageDataModule, split_off
from nas.data.batching import Split
from nas.errors import NasError


class _CifarDataModule(TensorImageDataModule):
    """Shared loading for CIFAR-10/100: torchvision's on-disk format, one clear error when missing."""

    NAME = ""
    NUM_CLASSES = 0
    DATASET: type[torchvision.datasets.CIFAR10]

    def __init__(
        self,
        data_dir: str,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        pad: int,
        flip: bool,
        val_size: int,
        train_subset: int | None,
        download: bool,
        cutout: int = 0,
    ) -> None:
        super().__init__(
            num_classes=self.NUM_CLASSES,
            in_channels=3,
            image_size=32,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            seed=seed,
            pad=pad,
            flip=flip,
            val_size=val_size,
            train_subset=train_subset,
            cutout=cutout,
        )
        self.data_dir = data_dir
        self.download = download

    def _load(self) -> tuple[Split, Split, Split]:
        root = Path(self.data_dir).expanduser().resolve()
        pool = self._read(root, train=True)
        train, val = split_off(pool, self.val_size, self.seed)
        return train, val, self._read(root, train=False)

    def _read(self, root: Path, train: bool) -> Split:
        dataset = self._open(root, train)
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
        return Split(images, torch.tensor(dataset.targets, dtype=torch.int64))

    def _open(self, root: Path, train: bool) -> torchvision.datasets.CIFAR10:
        """The torchvision dataset, extracting a copied archive or downloading when needed."""
        cls = self.DATASET
        try:
            return cls(root=str(root), train=train, download=False)
        except RuntimeError:
            pass  # missing or failing its md5 check: try the archive, then the download
        archive = root / cls.filename
        if archive.is_file():
            try:
                extract_archive(str(archive), str(root))
                return cls(root=str(root), train=train, download=False)
            except Exception as error:  # a broken archive: say so below instead of a tar traceback
                reason = f"the archive {archive} could not be used ({error})"
        else:
            reason = "downloading is off (download=false)"
        if self.download and not archive.is_file():
            try:
                return cls(root=str(root), train=train, download=True)
            except Exception as error:  # no network, a proxy, a partial file: all end the same way
                reason = f"downloading from {cls.url} failed ({type(error).__name__}: {error})"
        raise NasError(
            f"{self.NAME} not found (or failing its checksums) in {root / cls.base_folder}: {reason}. "
            f"To fix: copy {cls.filename} or its extracted folder {cls.base_folder}/ into {root}, "
            f"or point dataset.data_dir=... at the directory that holds it"
        )


class CIFAR10DataModule(_CifarDataModule):
    """CIFAR-10: 10 classes of 3x32x32 images; 45k/5k train/val split of the training set by seed."""

    NAME = "CIFAR-10"
    NUM_CLASSES = 10
    DATASET = torchvision.datasets.CIFAR10

    def __init__(
        self,
        data_dir: str = "data/cifar10",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        seed: int = 0,
        pad: int = 4,
        flip: bool = True,
        val_size: int = 5000,
        train_subset: int | None = None,
        download: bool = True,
        cutout: int = 0,
    ) -> None:
        super().__init__(
            data_dir,
            batch_size,
            eval_batch_size,
            seed,
            pad,
            flip,
            val_size,
            train_subset,
            download,
            cutout,
        )
        self.save_hyperparameters()


class CIFAR100DataModule(_CifarDataModule):
    """CIFAR-100 (fine labels): 100 classes of 3x32x32 images; same 45k/5k split as CIFAR-10."""

    NAME = "CIFAR-100"
    NUM_CLASSES = 100
    DATASET = torchvision.datasets.CIFAR100

    def __init__(
        self,
        data_dir: str = "data/cifar100",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        seed: int = 0,
        pad: int = 4,
        flip: bool = True,
        val_size: int = 5000,
        train_subset: int | None = None,
        download: bool = True,
        cutout: int = 0,
    ) -> None:
        super().__init__(
            data_dir,
            batch_size,
            eval_batch_size,
            seed,
            pad,
            flip,
            val_size,
            train_subset,
            download,
            cutout,
        )
        self.save_hyperparameters()
