"""`TensorImageDataModule`: every split in memory as uint8 tensors, batches built without per-image Python.

Subclasses only load their data (`_load`) and declare `num_classes`, `in_channels` and `image_size`
in their constructor, so a model can be built before `setup()`. Batches leave the loader as uint8;
`on_after_batch_transfer` (on the training device) augments them when training, then converts them
to float and normalises them with the training split's per-channel mean and std.

`in_memory_split`, `fixed_train_examples` and `first_val_examples` hand fixed, normalised images of
a split to code that draws its own batches (methods, BN recalibration, the one-shot analysis panel).
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from nas.data.batching import (
    EpochShuffleSampler,
    ResumableLoader,
    ShardSampler,
    Split,
    TensorBatchDataset,
    augment,
    channel_stats,
    cutout,
    passthrough,
)
from nas.distributed import processes_of
from nas.errors import NasError, check


def in_memory_split(datamodule, name: str, purpose: str) -> Split:
    """The `name` split ("train", "val", "test") of an in-memory datamodule, loaded if need be.

    Methods that draw their own batches (rewards, α minibatches, Hessian batches, analysis panels)
    need the split and `normalize`; any other datamodule stops with one line saying `purpose`.
    """
    check(
        datamodule is not None and hasattr(datamodule, "normalize"),
        f"{purpose} needs a TensorImageDataModule (in-memory train/val/test splits and "
        f"`normalize`), got {type(datamodule).__name__}; pass the datamodule to trainer.fit",
    )
    datamodule.setup("fit")  # idempotent: the splits are loaded once
    return getattr(datamodule, f"{name}_split")


def split_off(data: Split, size: int, seed: int, name: str = "val_size") -> tuple[Split, Split]:
    """Shuffle `data` with a permutation from `seed`; return (the rest, the last `size` examples)."""
    check(
        1 <= size < len(data),
        f"{name}={size} is out of range: expected 1 <= {name} < {len(data)} (the examples "
        f"available to split); choose a smaller {name}",
    )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    return data.take(order[:-size]), data.take(order[-size:])


class TensorImageDataModule(L.LightningDataModule):
    """Base DataModule: train/val/test `Split`s in memory, on-device augmentation and normalisation."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: int,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        pad: int,
        flip: bool,
        val_size: int,
        train_subset: int | None,
        cutout: int = 0,
    ) -> None:
        super().__init__()
        check(batch_size >= 1, f"batch_size={batch_size}: expected >= 1")
        check(eval_batch_size >= 1, f"eval_batch_size={eval_batch_size}: expected >= 1")
        check(pad >= 0, f"pad={pad}: expected >= 0 pixels of zero padding (0 turns cropping off)")
        check(val_size >= 1, f"val_size={val_size}: expected >= 1 validation examples")
        check(
            isinstance(cutout, int) and cutout >= 0,
            f"cutout={cutout!r}: expected 0 (off) or the side in pixels of the square zeroed per "
            "training image (DARTS: 16)",
        )
        check(
            train_subset is None or train_subset >= 1,
            f"train_subset={train_subset}: expected None (all) or >= 1 training examples",
        )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.pad = pad
        self.flip = flip
        self.val_size = val_size
        self.train_subset = train_subset
        self.cutout = cutout
        self.train_split: Split | None = None
        self.val_split: Split | None = None
        self.test_split: Split | None = None
        self._mean: tuple[float, ...] | None = None
        self._std: tuple[float, ...] | None = None
        self._scale_cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._train_loader: ResumableLoader | None = None
        self._resume: dict | None = (
            None  # loader state from a checkpoint, for the next train loader
        )

    def _load(self) -> tuple[Split, Split, Split]:
        """Read the data and return the full (train, val, test) splits."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Load every split once (later calls, e.g. for the test stage, reuse them)."""
        if self.train_split is not None:
            return
        train, val, test = self._load()
        for name, split in (("train", train), ("val", val), ("test", test)):
            shape = (self.in_channels, self.image_size, self.image_size)
            check(
                tuple(split.images.shape[1:]) == shape,
                f"{type(self).__name__}: {name} images have shape {tuple(split.images.shape[1:])}, "
                f"expected {shape}; the data files do not match this dataset",
            )
            check(
                len(split) == 0
                or 0 <= int(split.labels.min()) <= int(split.labels.max()) < self.num_classes,
                f"{type(self).__name__}: {name} labels must lie in 0..{self.num_classes - 1}; "
                "the data files do not match this dataset",
            )
        # Statistics of the whole training split, so a train_subset run normalises like a full one.
        self._mean, self._std = channel_stats(train.images)
        if self.train_subset is not None:
            check(
                self.train_subset <= len(train),
                f"train_subset={self.train_subset}: the training split has only {len(train)} "
                "examples; use a smaller train_subset or null for all",
            )
            train = train.take(slice(0, self.train_subset))
        check(
            len(train) >= self.batch_size,
            f"batch_size={self.batch_size} is larger than the {len(train)} training examples, so "
            "no full batch exists (train batches drop the last partial one); lower batch_size",
        )
        self.train_split, self.val_split, self.test_split = train, val, test

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the training split, in [0, 1] units (known after `setup()`)."""
        return self._stats()[0]

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the training split, in [0, 1] units."""
        return self._stats()[1]

    def _stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self._mean is None or self._std is None:
            raise NasError(
                f"{type(self).__name__}: mean/std are known after setup(); call setup() first"
            )
        return self._mean, self._std

    def _split(self, name: str) -> Split:
        self.setup()
        split = getattr(self, f"{name}_split")
        assert split is not None
        return split

    def train_dataloader(self) -> DataLoader:
        """Shuffled full batches; the order depends only on (seed, epoch); resumable mid-epoch.

        With several processes each takes its own block of every global batch (`EpochShuffleSampler`).
        """
        split = self._split("train")
        replicas, rank = processes_of(self.trainer)
        check(
            len(split) >= self.batch_size * replicas,
            f"{replicas} processes with batch_size={self.batch_size} need {self.batch_size * replicas} "
            f"training examples per step, but there are {len(split)}; lower batch_size or "
            "trainer.devices",
        )
        loader = ResumableLoader(
            TensorBatchDataset(split),
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(len(split), self.seed, self.batch_size, replicas, rank),
            drop_last=True,
            collate_fn=passthrough,
            num_workers=0,
            # Its own generator: otherwise every new epoch's iterator draws a seed from torch's global
            # RNG, which augmentation uses, and a run resumed at an epoch's end would drift.
            generator=torch.Generator().manual_seed(self.seed),
        )
        if self._resume:
            loader.load_state_dict(self._resume)
            self._resume = None
        self._train_loader = loader
        return loader

    # Lightning restores the loader's own state only when it builds the loader after restoring the
    # loops, but `estimated_stepping_batches` (the LR schedule) builds it before; the datamodule's
    # state is restored first, so it carries the loader's place in the epoch as well.
    def state_dict(self) -> dict:
        """The training loader's place in its epoch (saved in checkpoints by Lightning)."""
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader else {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Make the next (or the current, not yet iterated) training loader continue from it."""
        self._resume = state_dict.get("train_loader") or None
        if self._resume and self._train_loader is not None:
            self._train_loader.load_state_dict(self._resume)

    def _eval_loader(self, name: str) -> DataLoader:
        split = self._split(name)
        return DataLoader(
            TensorBatchDataset(split),
            batch_size=self.eval_batch_size,
            sampler=ShardSampler(len(split), *processes_of(self.trainer)),
            drop_last=False,
            collate_fn=passthrough,
            num_workers=0,
        )

    def val_dataloader(self) -> DataLoader:
        """Validation split in order, last partial batch kept."""
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        """Test split in order, last partial batch kept."""
        return self._eval_loader("test")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, C, H, W] -> float32 with zero mean and unit std per channel (training stats)."""
        device = images.device
        if device not in self._scale_cache:
            mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1) * 255
            inv_std = 1 / (torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1) * 255)
            self._scale_cache[device] = (mean.to(device), inv_std.to(device))
        mean, inv_std = self._scale_cache[device]
        return (images.float() - mean) * inv_std

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """On the device: augment uint8 images when training, then normalise to float32."""
        images, labels = batch
        trainer = self.trainer
        training = trainer is not None and trainer.training
        if training:
            # Augmenting before normalising makes the padding black, as in the usual CIFAR recipe.
            images = augment(images, self.pad, self.flip)
        images = self.normalize(images)
        if training and self.cutout:  # after normalising, as DARTS: the square is the mean colour
            images = cutout(images, self.cutout)
        return images, labels


def fixed_train_examples(datamodule, examples: int, seed: int) -> torch.Tensor:
    """`examples` un-augmented, normalised training images [N, C, H, W] (CPU), chosen by `seed`.

    No labels are used (the paper's KL analysis compares predictions only); a seeded permutation
    rather than the first N keeps the sample representative of a split stored in class order.
    """
    split = in_memory_split(datamodule, "train", "the one-shot analysis")
    check(
        1 <= examples <= len(split),
        f"kl_examples={examples} must lie in 1..{len(split)} (the training split's size)",
    )
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return datamodule.normalize(split.images[order[:examples]])


def first_val_examples(datamodule, examples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `examples` validation images (normalised) and labels (CPU): a fixed subset."""
    split = in_memory_split(datamodule, "val", "the one-shot analysis")
    check(
        1 <= examples,
        f"val_examples={examples} must be >= 1 (or 0 to switch one-shot accuracy off)",
    )
    n = min(examples, len(split))
    return datamodule.normalize(split.images[:n]), split.labels[:n]
