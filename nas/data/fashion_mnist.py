"""Fashion-MNIST from its four idx files (Debian's dataset-fashion-mnist or torchvision's layout).

The idx reader is our own (numpy + gzip) so a corrupt or truncated file stops with a message naming
it, rather than a numpy reshape error.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
import torchvision

from nas.data.base import TensorImageDataModule, split_off
from nas.data.batching import Split
from nas.errors import NasError, check

# idx type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (gzip-compressed when its name ends in .gz) into an array of its shape."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as file:
                raw = file.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise NasError(
            f"cannot read idx file {path}: {error}; the file is corrupt or truncated, "
            "replace it with a fresh copy"
        ) from error
    check(
        len(raw) >= 4 and raw[0] == 0 and raw[1] == 0 and raw[2] in _IDX_DTYPES,
        f"{path} is not an idx file (bad magic number {raw[:4].hex() or 'none'}, expected "
        "00 00 <type> <ndim>); replace it with a fresh copy",
    )
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    check(
        len(raw) >= header, f"{path} is truncated inside its header; replace it with a fresh copy"
    )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    check(
        len(raw) - header == expected,
        f"{path} is truncated or corrupt: its header promises shape {shape} ({expected} bytes) "
        f"but {len(raw) - header} bytes follow; replace it with a fresh copy",
    )
    # astype: native byte order, and a writable copy (frombuffer over bytes is read-only)
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def find_idx_files(root: Path) -> dict[str, Path] | None:
    """The four files under `root` or torchvision's `root/FashionMNIST/raw`, plain or .gz; else None."""
    for folder in (root, root / "FashionMNIST" / "raw"):
        found = {}
        for key, name in FILES.items():
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(FILES):
            return found
    return None


class FashionMNISTDataModule(TensorImageDataModule):
    """Fashion-MNIST: 10 classes of 1x28x28 images; 55k/5k train/val split by seed, 10k test.

    Augmentation defaults: crop with 2 pixels of padding and horizontal flip (the garments are
    roughly mirror-symmetric, so a flipped shirt is still a shirt).
    """

    def __init__(
        self,
        data_dir: str = "/usr/share/datasets/fashion-mnist",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        seed: int = 0,
        pad: int = 2,
        flip: bool = True,
        val_size: int = 5000,
        train_subset: int | None = None,
        download: bool = False,
        cutout: int = 0,
    ) -> None:
        super().__init__(
            num_classes=10,
            in_channels=1,
            image_size=28,
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
        self.save_hyperparameters()

    def _load(self) -> tuple[Split, Split, Split]:
        root = Path(self.data_dir).expanduser().resolve()
        files = find_idx_files(root)
        if files is None:
            files = self._download(root)
        pool = self._read(files["train_images"], files["train_labels"])
        train, val = split_off(pool, self.val_size, self.seed)
        return train, val, self._read(files["test_images"], files["test_labels"])

    def _download(self, root: Path) -> dict[str, Path]:
        how = (
            "install Debian's package (apt-get install dataset-fashion-mnist, into "
            "/usr/share/datasets/fashion-mnist), copy the four files there, point "
            "dataset.data_dir=... at them, or set dataset.download=true to fetch them with torchvision"
        )
        reason = "downloading is off (download=false)"
        if self.download:
            try:
                torchvision.datasets.FashionMNIST(root=str(root), train=True, download=True)
            except Exception as error:  # no network, a proxy, a partial file: all end the same way
                reason = f"the torchvision download failed ({type(error).__name__}: {error})"
            files = find_idx_files(root)
            if files is not None:
                return files
        names = ", ".join(f"{name}[.gz]" for name in FILES.values())
        raise NasError(
            f"Fashion-MNIST not found: looked for {names} in {root} and {root / 'FashionMNIST' / 'raw'}; "
            f"{reason}. To fix: {how}"
        )

    @staticmethod
    def _read(images_path: Path, labels_path: Path) -> Split:
        images, labels = read_idx(images_path), read_idx(labels_path)
        check(
            images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28),
            f"{images_path} holds {images.dtype} of shape {images.shape}, expected uint8 [N, 28, 28]",
        )
        check(
            labels.ndim == 1 and len(labels) == len(images),
            f"{labels_path} holds {labels.shape} labels for the {len(images)} images of "
            f"{images_path}; the two files do not belong together",
        )
        return Split(
            torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
        )
