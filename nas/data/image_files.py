"""An image folder on disk: its layout and classes (torchvision's `ImageFolder`), and its images
decoded with PIL to uint8 tensors of one size and mode.

Two layouts: `<root>/<class>/<images>` (one pool, split by fractions), or `<root>/train/<class>/...`
with optional `val/` and `test/` beside it (a missing one is split off train/). Folders whose name
starts with "." are not classes (`.ipynb_checkpoints`, the normalisation cache). Files are images by
torchvision's extensions (`IMG_EXTENSIONS`); other files are skipped and counted.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from nas.errors import NasError, check

SPLIT_FOLDERS = ("train", "val", "test")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}  # PIL modes of one-channel images
LAYOUT_HINT = (
    "<root>/<class>/<images>, or <root>/train/<class>/<images> with optional val/ and test/"
)


class ClassFolder(ImageFolder):
    """torchvision's ImageFolder over `<folder>/<class>/...`; hidden folders are not classes.

    `classes` given (a val/ or test/ folder): labels are indexed as in train/, and a class folder
    not among them is refused. `skipped` lists the files that are not images.
    """

    def __init__(self, folder: Path, classes: Sequence[str] | None = None) -> None:
        self.given_classes = list(classes) if classes is not None else None
        self.skipped: list[str] = []
        self.present: list[str] = []
        super().__init__(str(folder), is_valid_file=self._is_image, allow_empty=True)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        self.present = sorted(
            e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith(".")
        )
        check(
            bool(self.present),
            f"dataset.root: {directory} has no class folders; expected {LAYOUT_HINT}",
        )
        classes = self.present if self.given_classes is None else self.given_classes
        unknown = sorted(set(self.present) - set(classes))
        check(
            not unknown,
            f"dataset.root: {directory} has class folder(s) {unknown} that train/ does not have; "
            f"a split can only hold the training classes ({', '.join(classes)}): rename or remove them",
        )
        return classes, {name: index for index, name in enumerate(classes)}

    def _is_image(self, path: str) -> bool:
        if has_file_allowed_extension(path, IMG_EXTENSIONS):
            return True
        self.skipped.append(path)
        return False

    def check_no_empty_class(self) -> None:
        """Every class folder present holds at least one image."""
        found = set(self.targets)
        for name in self.present:
            check(
                self.class_to_idx[name] in found,
                f"dataset.root: class folder {Path(self.root) / name} holds no images (files "
                f"ending in {', '.join(IMG_EXTENSIONS)}); add its images or remove the folder",
            )


@dataclass
class FolderLayout:
    """The folders of a root: `pool` (one folder of classes) or `train` (+ `val`, `test`)."""

    root: Path
    folders: dict[str, ClassFolder] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return next(iter(self.folders.values())).classes

    @property
    def skipped(self) -> list[str]:
        return [path for folder in self.folders.values() for path in folder.skipped]


def scan_layout(root: Path) -> FolderLayout:
    """The layout of `root`, its classes and image files, checked (missing root, no or one class,
    an empty class folder, a mixture of both layouts)."""
    check(
        root.exists(),
        f"dataset.root={str(root)!r} does not exist; pass the folder of your images ({LAYOUT_HINT})",
    )
    check(
        root.is_dir(), f"dataset.root={str(root)!r} is a file, not a folder; expected {LAYOUT_HINT}"
    )
    names = {e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")}
    layout = FolderLayout(root)
    if "train" in names:
        others = sorted(names - set(SPLIT_FOLDERS))
        check(
            not others,
            f"dataset.root={str(root)!r} mixes split folders (train/) with other folders "
            f"{others}; use one layout: {LAYOUT_HINT}",
        )
        layout.folders["train"] = ClassFolder(root / "train")
        for name in SPLIT_FOLDERS[1:]:
            if name in names:
                layout.folders[name] = ClassFolder(root / name, layout.folders["train"].classes)
    else:
        layout.folders["pool"] = ClassFolder(root)
    for folder in layout.folders.values():
        folder.check_no_empty_class()
    classes = layout.classes
    check(
        len(classes) >= 2,
        f"dataset.root={str(root)!r} has {len(classes)} class folder ({', '.join(classes)}); a "
        "classifier needs at least 2: add one folder of images per class",
    )
    return layout


def peek(path: str) -> tuple[tuple[int, int], str]:
    """(width, height) and PIL mode of an image, from its header only."""
    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for a bad file
        raise unreadable(path, (type(error).__name__, str(error))) from error


def unreadable(path: str, error: tuple[str, str]) -> NasError:
    """The message for a file PIL cannot decode; `error` is (exception type, its text)."""
    return NasError(
        f"dataset.root: cannot read image {path} ({error[0]}: {error[1]}); the file is corrupt "
        "or not an image: replace or delete it"
    )


class ImageReader:
    """Decode a file with PIL, convert it to `mode`, resize its shorter side to `size` and
    centre-crop it square (torchvision's Resize + CenterCrop): uint8 [C, size, size]."""

    def __init__(self, mode: str, size: int) -> None:
        self.mode, self.size = mode, size

    def __call__(self, path: str) -> torch.Tensor:  # ImageFolder's `loader`
        return self.read(path)[0]

    def read(self, path: str) -> tuple[torch.Tensor, tuple[int, int], str]:
        """(pixels, original (width, height), original mode)."""
        with open(path, "rb") as file:
            image = Image.open(file)
            image.load()
        original = (image.size, image.mode)
        if image.mode != self.mode:
            image = image.convert(self.mode)
        if image.size != (self.size, self.size):
            image = TF.center_crop(TF.resize(image, self.size), self.size)
        return TF.pil_to_tensor(image), *original


class _Checked(Dataset):
    """(pixels or None, original size, original mode or the error) of each path: a worker must not
    raise, or the DataLoader would wrap the message in a traceback."""

    def __init__(self, paths: Sequence[str], reader: ImageReader) -> None:
        self.paths, self.reader = paths, reader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return self.reader.read(self.paths[index])
        except Exception as error:  # reported in the main process, naming the file
            return None, None, (type(error).__name__, str(error))


@dataclass
class PixelNotes:
    """How many images were resized or converted on the way to `size` and `mode`."""

    size: int
    mode: str
    images: int = 0
    resized: Counter = field(default_factory=Counter)  # original "WxH" -> count
    converted: Counter = field(default_factory=Counter)  # original mode -> count

    def line(self) -> str | None:
        """One line for the log, or None when every image already had the size and mode."""
        parts = []
        if self.resized:
            sizes = ", ".join(f"{s} ({n})" for s, n in self.resized.most_common(3))
            parts.append(
                f"resized {sum(self.resized.values())} of {self.images} images to "
                f"{self.size}x{self.size} (shorter side, then centre crop; sizes {sizes})"
            )
        if self.converted:
            modes = ", ".join(f"{m} ({n})" for m, n in self.converted.most_common())
            parts.append(
                f"converted {sum(self.converted.values())} of {self.images} to {self.mode} "
                f"(from {modes})"
            )
        return "; ".join(parts) or None

    def as_dict(self) -> dict:
        return {"images": self.images, "resized": self.resized, "converted": self.converted}

    @classmethod
    def from_dict(cls, size: int, mode: str, saved: dict) -> PixelNotes:
        return cls(
            size, mode, saved["images"], Counter(saved["resized"]), Counter(saved["converted"])
        )


def decode(
    paths: Sequence[str], reader: ImageReader, workers: int, notes: PixelNotes
) -> Iterator[torch.Tensor]:
    """The images of `paths` in order, in uint8 batches [B, C, S, S], decoded by `workers`
    processes; the first unreadable file stops with its name."""
    loader = DataLoader(
        _Checked(paths, reader), batch_size=256, num_workers=workers, collate_fn=list
    )
    start = 0
    for batch in loader:
        for offset, (pixels, size, mode) in enumerate(batch):
            if pixels is None:
                raise unreadable(paths[start + offset], mode)
            notes.images += 1
            if size != (reader.size, reader.size):
                notes.resized[f"{size[0]}x{size[1]}"] += 1
            if mode != reader.mode:
                notes.converted[mode] += 1
        start += len(batch)
        yield torch.stack([pixels for pixels, _, _ in batch])
