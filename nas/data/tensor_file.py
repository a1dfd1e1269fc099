"""`dataset=tensors dataset.path=<file.pt|.npz>`: images and labels you already hold as arrays.

The file (a `torch.save`d dict of tensors, read with `weights_only=True`, or a NumPy `.npz`) holds:

| key | shape | dtype |
| --- | --- | --- |
| `images` | [N, H, W] (one channel), [N, C, H, W] or [N, H, W, C] (read as [N, C, H, W] when H == W) | uint8 (0..255), another integer type in 0..255, or float in [0, 1] |
| `labels` | [N] | integer class indices 0..K-1 |
| `val_images`, `val_labels` (optional) | as above | as above |
| `test_images`, `test_labels` (optional) | as above | as above |

A split without its own arrays is split off `images` by `val_fraction` / `test_fraction` (seeded,
stratified: `nas.data.split`). Images must be square; the class count is the largest label + 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from nas.data.base import TensorImageDataModule
from nas.data.batching import Split
from nas.data.split import check_fraction, stratified_split
from nas.errors import NasError, check

SPLITS = {"train": "", "val": "val_", "test": "test_"}  # split -> prefix of its keys


class TensorFileDataModule(TensorImageDataModule):
    """Every split in memory as uint8, from one file of arrays; see the module docstring."""

    def __init__(
        self,
        path: str,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        seed: int = 0,
        pad: int = 0,
        flip: bool = False,
        cutout: int = 0,
        train_subset: int | None = None,
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        arrays = read_arrays(self.path)
        given = {
            name: _split_of(self.path, arrays, prefix)
            for name, prefix in SPLITS.items()
            if f"{prefix}images" in arrays or f"{prefix}labels" in arrays or not prefix
        }
        shape = tuple(given["train"].images.shape[1:])
        for name, split in given.items():
            check(
                tuple(split.images.shape[1:]) == shape,
                f"dataset.path={str(self.path)!r}: {SPLITS[name]}images are "
                f"{list(split.images.shape[1:])} per image but images are {list(shape)}; every "
                "split must hold images of one shape [C, H, W]",
            )
        num_classes = int(max(int(s.labels.max()) for s in given.values() if len(s))) + 1
        check(
            num_classes >= 2,
            f"dataset.path={str(self.path)!r}: every label is 0, so there is one class; a "
            "classifier needs at least 2 (labels 0..K-1)",
        )
        self.splits = _with_held_out(given, val_fraction, test_fraction, seed, num_classes)
        super().__init__(
            num_classes=num_classes,
            in_channels=shape[0],
            image_size=shape[1],
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            seed=seed,
            pad=pad,
            flip=flip,
            val_size=len(self.splits["val"]),
            train_subset=train_subset,
            cutout=cutout,
        )
        self.save_hyperparameters()

    def _load(self) -> tuple[Split, Split, Split]:
        return self.splits["train"], self.splits["val"], self.splits["test"]


def read_arrays(path: Path) -> dict[str, np.ndarray | torch.Tensor]:
    """The arrays of a `.pt` or `.npz` file, by key."""
    check(path.is_file(), f"dataset.path={str(path)!r} does not exist; pass a .pt or .npz file")
    check(
        path.suffix in (".pt", ".pth", ".npz"),
        f"dataset.path={str(path)!r}: expected a .pt file (torch.save of a dict of tensors) or a "
        ".npz file (numpy.savez), by its extension",
    )
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as found:
                return {key: found[key] for key in found.files}
        found = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and numpy raise many kinds for a damaged or foreign file
        raise NasError(
            f"dataset.path={str(path)!r} cannot be read ({type(error).__name__}: {error}); "
            "write it with torch.save({'images': ..., 'labels': ...}) or numpy.savez"
        ) from error
    check(
        isinstance(found, Mapping),
        f"dataset.path={str(path)!r} holds a {type(found).__name__}, expected a dict with keys "
        "'images' and 'labels' (and optionally val_/test_ ones)",
    )
    return dict(found)


def _split_of(path: Path, arrays: Mapping, prefix: str) -> Split:
    """The Split of `<prefix>images` and `<prefix>labels`, checked and converted to uint8 NCHW."""
    keys = (f"{prefix}images", f"{prefix}labels")
    missing = [key for key in keys if key not in arrays]
    check(
        not missing,
        f"dataset.path={str(path)!r} has no {' or '.join(repr(k) for k in missing)} (its keys: "
        f"{', '.join(sorted(arrays))}); it needs {keys[0]!r} and {keys[1]!r} together",
    )
    images = torch.as_tensor(np.asarray(arrays[keys[0]]))
    labels = torch.as_tensor(np.asarray(arrays[keys[1]]))
    where = f"dataset.path={str(path)!r}: {keys[0]!r}"
    check(
        images.dim() in (3, 4) and len(images) >= 1,
        f"{where} has shape {list(images.shape)}; expected [N, H, W], [N, C, H, W] or [N, H, W, C]",
    )
    if images.dim() == 3:
        images = images.unsqueeze(1)
    elif images.shape[2] != images.shape[3]:  # not [N, C, H, W] with square images: channels last
        images = images.permute(0, 3, 1, 2)
    check(
        images.shape[2] == images.shape[3],
        f"{where} has shape {list(arrays[keys[0]].shape)}: the images are not square; resize "
        "them to H == W first",
    )
    check(
        labels.shape == (len(images),)
        and not labels.is_floating_point()
        and labels.dtype != torch.bool,
        f"dataset.path={str(path)!r}: {keys[1]!r} must be integers [{len(images)}] (one class "
        f"index per image), got {labels.dtype} {list(labels.shape)}",
    )
    check(
        int(labels.min()) >= 0,
        f"dataset.path={str(path)!r}: {keys[1]!r} has label {int(labels.min())}; expected "
        "class indices 0..K-1",
    )
    return Split(_as_uint8(images, where).contiguous(), labels.long())


def _as_uint8(images: torch.Tensor, where: str) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images
    low, high = float(images.min()), float(images.max())
    if images.is_floating_point():
        check(
            0 <= low and high <= 1,
            f"{where} are floats in [{low:g}, {high:g}]; expected [0, 1] (or uint8 0..255)",
        )
        return (images.double() * 255).round().to(torch.uint8)
    check(
        images.dtype != torch.bool and 0 <= low and high <= 255,
        f"{where} are {images.dtype} in [{low:g}, {high:g}]; expected 0..255 (or floats in [0, 1])",
    )
    return images.to(torch.uint8)


def _with_held_out(
    given: dict[str, Split], val_fraction: float, test_fraction: float, seed: int, classes: int
) -> dict[str, Split]:
    """The given splits, with a missing val or test split cut off the training arrays."""
    wanted = {"val": val_fraction, "test": test_fraction}
    for name, fraction in wanted.items():
        check_fraction(f"dataset.{name}_fraction", fraction)
    split_off = {name: f for name, f in wanted.items() if name not in given}
    pool = given["train"]
    names = [str(c) for c in range(classes)]
    parts = stratified_split(pool.labels, split_off, seed, names)
    return {**given, **{name: pool.take(indices) for name, indices in parts.items()}}
