"""`dataset=image_folder dataset.root=<dir>`: your own images, in torchvision's ImageFolder layout.

Layouts, classes and decoding: `nas.data.image_files`. A pooled folder is split by `val_fraction`
and `test_fraction` (seeded, stratified: `nas.data.split`); with `train/` (+ `val/`, `test/`) the
folders given are used and a missing one is split off train/. Every image is converted to
`channels` (1: PIL "L", 3: "RGB") and resized to `image_size` (null: the first image's, which must
then be square); one log line counts what was resized or converted.

All splits fit in `max_memory_mb` of uint8: held in memory, exactly as the other datasets (batches,
resumable order, augmentation and normalisation on the device). Larger: the training and test
splits are streamed from disk by `num_workers` DataLoader processes (torchvision's ImageFolder),
while the validation split stays in memory (search.py scores every architecture on it); a run
resumed from a mid-epoch checkpoint then does not continue that epoch's exact order (workers read
ahead, so the place in it is not saved; Lightning warns), one resumed at an epoch's end does.
The training split's normalisation statistics are cached (`nas.data.stats_cache`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from nas.data.base import TensorImageDataModule
from nas.data.batching import EpochShuffleSampler, ShardSampler, Split
from nas.data.image_files import (
    GRAY_MODES,
    ClassFolder,
    ImageReader,
    PixelNotes,
    decode,
    peek,
    scan_layout,
)
from nas.data.split import check_fraction, stratified_split
from nas.data.stats_cache import HistogramStats, content_key, read_cached, write_cached
from nas.distributed import processes_of
from nas.errors import NasError, check

log = logging.getLogger(__name__)
MB = 1 << 20


class ImageFolderDataModule(TensorImageDataModule):
    """Classes are the folder names, sorted (label i = i-th name); see the module docstring."""

    def __init__(
        self,
        root: str,
        image_size: int | None = None,
        channels: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        seed: int = 0,
        pad: int = 0,
        flip: bool = False,
        cutout: int = 0,
        train_subset: int | None = None,
        max_memory_mb: float = 2048,
        num_workers: int = 2,
    ) -> None:
        check(
            image_size is None or (isinstance(image_size, int) and image_size >= 1),
            f"dataset.image_size={image_size!r}: expected null (the first image's size) or the "
            "side in pixels every image is resized to",
        )
        check(
            channels in (None, 1, 3),
            f"dataset.channels={channels!r}: expected 1 (grayscale), 3 (RGB) or null (as the "
            "first image)",
        )
        check(max_memory_mb > 0, f"dataset.max_memory_mb={max_memory_mb}: expected > 0")
        check(
            isinstance(num_workers, int) and num_workers >= 0,
            f"dataset.num_workers={num_workers!r}: expected an integer >= 0 (0: decode in this "
            "process)",
        )
        self.root = Path(root).expanduser().resolve()
        layout = scan_layout(self.root)
        if layout.skipped:
            log.info(
                "image folder %s: skipped %d file(s) that are not images (e.g. %s)",
                self.root,
                len(layout.skipped),
                layout.skipped[0],
            )
        self.classes = layout.classes
        self.splits = _splits(layout, val_fraction, test_fraction, seed)
        first = self.splits["train"][0].samples[0][0]  # the training folder's first file, sorted
        (width, height), mode = peek(first)
        check(
            image_size is not None or width == height,
            f"dataset.image_size=null takes the first image's size, but {first} is "
            f"{width}x{height} (not square): set dataset.image_size=<side> (images are resized on "
            "their shorter side, then centre-cropped)",
        )
        size = image_size or width
        in_channels = channels or (1 if mode in GRAY_MODES else 3)
        counts = {name: len(indices) for name, (_, indices) in self.splits.items()}
        self.image_bytes = sum(counts.values()) * in_channels * size**2
        self.streamed = self.image_bytes > max_memory_mb * MB
        super().__init__(
            num_classes=len(self.classes),
            in_channels=in_channels,
            image_size=size,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            seed=seed,
            pad=pad,
            flip=flip,
            val_size=counts["val"],
            train_subset=train_subset,
            cutout=cutout,
        )
        self.max_memory_mb = max_memory_mb
        self.num_workers = num_workers
        self.reader = ImageReader("L" if in_channels == 1 else "RGB", size)
        for folder in layout.folders.values():
            folder.loader = self.reader  # ImageFolder's loader: what the streamed splits read with
        self.notes: PixelNotes | None = None
        self.save_hyperparameters()
        if self.streamed:
            val_bytes = counts["val"] * in_channels * size**2
            check(
                val_bytes <= max_memory_mb * MB,
                f"dataset.max_memory_mb={max_memory_mb}: the validation split alone needs "
                f"{val_bytes / MB:.3g} MB in memory (search.py scores every architecture on it); "
                "raise dataset.max_memory_mb, or lower dataset.val_fraction or dataset.image_size",
            )

    # Streamed, the training split is not in memory; code that reads it from there (the one-shot
    # panel's KL examples, BayesNAS, BN recalibration) gets this message instead of None.
    @property
    def train_split(self) -> Split | None:
        if getattr(self, "streamed", False):
            raise NasError(
                f"image folder {self.root}: the training split is streamed from disk "
                f"({self.image_bytes / MB:.3g} MB of uint8 images > dataset.max_memory_mb="
                f"{self.max_memory_mb}), but this run reads it from memory (the one-shot panel, "
                "BayesNAS, search.bn_recalibration_batches); raise dataset.max_memory_mb above "
                f"{math.ceil(self.image_bytes / MB)} or lower dataset.image_size"
            )
        return self._train_split

    @train_split.setter
    def train_split(self, split: Split | None) -> None:
        self._train_split = split

    def paths(self, name: str) -> list[str]:
        """The files of split `name` ("train", "val", "test"), in the split's order."""
        folder, indices = self.splits[name]
        return [folder.samples[i][0] for i in indices.tolist()]

    def labels(self, name: str) -> torch.Tensor:
        folder, indices = self.splits[name]
        return torch.as_tensor(folder.targets, dtype=torch.int64)[indices]

    def _decoded(self, name: str, notes: PixelNotes) -> Split:
        """Split `name` decoded into memory."""
        paths = self.paths(name)
        shape = (len(paths), self.in_channels, self.image_size, self.image_size)
        images = torch.empty(shape, dtype=torch.uint8)
        start = 0
        for batch in decode(paths, self.reader, self.num_workers, notes):
            images[start : start + len(batch)] = batch
            start += len(batch)
        return Split(images, self.labels(name))

    def _checked(self, name: str, notes: PixelNotes, histogram: HistogramStats | None) -> None:
        """Decode split `name` without keeping it: every file checked, pixels counted."""
        for batch in decode(self.paths(name), self.reader, self.num_workers, notes):
            if histogram is not None:
                histogram.add(batch)

    def _load(self) -> tuple[Split, Split, Split]:
        notes = self._new_notes()
        train, val, test = (self._decoded(name, notes) for name in ("train", "val", "test"))
        self.notes = notes
        return train, val, test

    def _new_notes(self) -> PixelNotes:
        return PixelNotes(self.image_size, self.reader.mode)

    def setup(self, stage: str | None = None) -> None:
        """Decode and check every image once (streamed: unless the cache already holds the
        folder's statistics), then cache the training split's statistics."""
        if self._mean is not None:
            return
        key = content_key(
            self.root,
            {name: self.paths(name) for name in self.splits},
            self.image_size,
            self.in_channels,
        )
        cached = read_cached(self.root, key)
        if not self.streamed:
            super().setup(stage)
        else:
            self._setup_streamed(cached)
        if cached is None:
            entry = {"mean": self._mean, "std": self._std, "pixels": self.notes.as_dict()}
            write_cached(self.root, key, {**entry, "classes": self.classes})
        if self.notes.line():
            log.info("image folder %s: %s", self.root, self.notes.line())

    def _setup_streamed(self, cached: dict | None) -> None:
        notes = self._new_notes()
        val = self._decoded("val", notes)
        if cached is not None:  # the same files were decoded and checked when it was written
            self._mean, self._std = tuple(cached["mean"]), tuple(cached["std"])
            self.notes = PixelNotes.from_dict(self.image_size, self.reader.mode, cached["pixels"])
        else:
            histogram = HistogramStats(self.in_channels)
            self._checked("train", notes, histogram)
            self._checked("test", notes, None)  # streamed later: here only checked
            self._mean, self._std = histogram.stats()
            self.notes = notes
        train = self.splits["train"][1]
        if self.train_subset is not None:
            check(
                self.train_subset <= len(train),
                f"train_subset={self.train_subset}: the training split has only {len(train)} "
                "examples; use a smaller train_subset or null for all",
            )
        check(
            len(train) >= self.batch_size,
            f"batch_size={self.batch_size} is larger than the {len(train)} training examples, so "
            "no full batch exists (train batches drop the last partial one); lower batch_size",
        )
        self.val_split = val

    def _streamed(self, name: str) -> Subset:
        folder, indices = self.splits[name]
        if name == "train" and self.train_subset is not None:
            indices = indices[: self.train_subset]
        return Subset(folder, indices.tolist())

    def train_dataloader(self) -> DataLoader:
        if not self.streamed:
            return super().train_dataloader()
        self.setup()
        data = self._streamed("train")
        replicas, rank = processes_of(self.trainer)
        check(
            len(data) >= self.batch_size * replicas,
            f"{replicas} processes with batch_size={self.batch_size} need "
            f"{self.batch_size * replicas} training examples per step, but there are {len(data)}; "
            "lower batch_size or trainer.devices",
        )
        return DataLoader(
            data,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(len(data), self.seed, self.batch_size, replicas, rank),
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def test_dataloader(self) -> DataLoader:
        if not self.streamed:
            return super().test_dataloader()
        self.setup()
        data = self._streamed("test")
        return DataLoader(
            data,
            batch_size=self.eval_batch_size,
            sampler=ShardSampler(len(data), *processes_of(self.trainer)),
            num_workers=self.num_workers,
        )


def _splits(
    layout, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, tuple[ClassFolder, torch.Tensor]]:
    """Each split as (the folder it comes from, indices into its samples, seeded order)."""
    base = layout.folders.get("pool") or layout.folders["train"]
    wanted = {"val": val_fraction, "test": test_fraction}
    split_off = {name: f for name, f in wanted.items() if name not in layout.folders}
    for name, fraction in wanted.items():
        if name not in split_off:  # a folder of its own: the fraction is not used, but checked
            check_fraction(f"dataset.{name}_fraction", fraction)
    labels = torch.as_tensor(base.targets, dtype=torch.int64)
    parts = stratified_split(labels, split_off, seed, base.classes)
    found = {name: (base, indices) for name, indices in parts.items()}
    generator = torch.Generator().manual_seed(seed + 1)
    for name in ("val", "test"):
        if name in layout.folders:
            folder = layout.folders[name]
            found[name] = (folder, torch.randperm(len(folder), generator=generator))
    return found
