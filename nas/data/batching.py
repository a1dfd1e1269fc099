"""Whole-batch pieces: one-index-per-batch dataset, an epoch-seeded sampler, vectorised augmentation.

Nothing here loops over examples in Python: a batch is one tensor index into the uint8 images, and
augmentation draws per-example offsets as tensors and gathers with index arithmetic, so it runs on
whatever device the batch lives on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from nas.errors import check


@dataclass(frozen=True)
class Split:
    """One split held in memory: uint8 images [N, C, H, W] and int64 labels [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        check(
            self.images.dtype == torch.uint8 and self.images.dim() == 4,
            f"Split images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}",
        )
        check(
            self.labels.dtype == torch.int64 and self.labels.shape == self.images.shape[:1],
            f"Split labels must be int64 [{self.images.shape[0]}], "
            f"got {self.labels.dtype} {tuple(self.labels.shape)}",
        )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: torch.Tensor | slice) -> Split:
        """The examples at `index` (a tensor of indices or a slice)."""
        return Split(self.images[index], self.labels[index])


class TensorBatchDataset(Dataset):
    """Dataset over a `Split` whose `__getitems__` returns a whole batch as two tensors."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split.images[index], self.split.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch at `indices`: one gather, no per-example Python."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.split.images[index], self.split.labels[index]


def passthrough(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate function for `TensorBatchDataset`: the batch is already collated."""
    return batch


class ResumablePass:
    """A sampler's place in the current epoch, which a checkpoint can carry.

    `position` counts the indices handed out in the current epoch; `resume_at(epoch, position)`
    makes the next pass, if it is of `epoch`, skip what a killed run had already consumed.
    Subclasses set `epoch`, `position` and `_resume` in `__init__` and iterate with `_resume_pass`.
    """

    epoch: int
    position: int
    _resume: tuple[int, int] | None

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration yields (Lightning calls this)."""
        self.epoch = epoch

    def resume_at(self, epoch: int, position: int) -> None:
        """Make the next iteration, if it is of `epoch`, start at index `position` of its order."""
        self._resume = (epoch, position)

    def _resume_pass(self, order: list[int]) -> Iterator[int]:
        """The pass over `order` from the resume point (or from its start)."""
        # A resume point of an earlier epoch (a checkpoint at an epoch's end) means: start afresh.
        resume, self._resume = self._resume, None
        self.position = resume[1] if resume is not None and resume[0] == self.epoch else 0
        return self._count(order)

    def _count(self, order: list[int]) -> Iterator[int]:
        while self.position < len(order):
            self.position += 1
            yield order[self.position - 1]


class EpochShuffleSampler(ResumablePass, DistributedSampler):
    """A random permutation of `range(size)` that depends only on (seed, epoch), in full batches.

    With several processes (`replicas`, Lightning's DDP) every process draws the same permutation
    and takes its own `batch_size` block of each global batch of `replicas * batch_size`: process
    r's k-th batch is examples [(k*replicas + r) * batch_size, ...+ batch_size) of the permutation.
    So the processes together see exactly the batches a single process with `replicas` times the
    batch size would see, and examples that do not fill a global batch are left out (drop_last).

    It is a `DistributedSampler` only so that Lightning keeps it instead of wrapping it in its own
    (which would lose the place in the epoch): the sharding above is its own. Its place in the
    epoch (`ResumablePass`) counts this process's indices.
    """

    def __init__(
        self, size: int, seed: int, batch_size: int = 1, replicas: int = 1, rank: int = 0
    ) -> None:
        check(
            replicas >= 1 and 0 <= rank < replicas,
            f"EpochShuffleSampler: rank {rank} is not one of {replicas} processes",
        )
        self.size, self.seed, self.batch_size = size, seed, batch_size
        self.replicas, self.rank = replicas, rank
        self.epoch = 0
        self.position = 0
        self._resume: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[int]:
        # SeedSequence mixes (seed, epoch) so that no two pairs share a stream, unlike seed + epoch.
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        order = torch.randperm(self.size, generator=generator)
        blocks = order[: len(self) * self.replicas].view(-1, self.replicas, self.batch_size)
        return self._resume_pass(blocks[:, self.rank].reshape(-1).tolist())

    def __len__(self) -> int:
        """Indices per epoch for this process: its share of the full global batches."""
        return self.size // (self.batch_size * self.replicas) * self.batch_size


class ShardSampler(DistributedSampler):
    """Evaluation order: `range(size)` in order, cut into one contiguous part per process.

    Unlike Lightning's default it repeats no example to even the parts out, so accuracies summed
    over the processes (torchmetrics) count every example exactly once.
    """

    def __init__(self, size: int, replicas: int = 1, rank: int = 0) -> None:
        self.size, self.replicas, self.rank = size, replicas, rank

    def _part(self) -> range:
        start = self.size * self.rank // self.replicas
        return range(start, self.size * (self.rank + 1) // self.replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self._part())

    def __len__(self) -> int:
        return len(self._part())

    def set_epoch(self, epoch: int) -> None:
        """The order is the same every epoch."""


class ResumableLoader(DataLoader):
    """A DataLoader whose place in the epoch is saved in checkpoints, so a resumed run sees the rest.

    Lightning saves `state_dict()` of every training loader that has one and calls `load_state_dict`
    before it iterates again. The loader is fetched one batch at a time (no prefetch: its length is
    known, `num_workers=0`), so the sampler's position is exactly the batches consumed.
    """

    def state_dict(self) -> dict:
        """The epoch and position of an `EpochShuffleSampler`; empty for any other sampler."""
        sampler = self.sampler
        if not isinstance(sampler, EpochShuffleSampler):
            return {}
        return {
            "epoch": sampler.epoch,
            "position": sampler.position,
            "size": sampler.size,
            "batch_size": self.batch_size,
            "replicas": sampler.replicas,
            "length": len(sampler),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state` (written by `state_dict`) when the data are the same."""
        sampler = self.sampler
        if not state or not isinstance(sampler, EpochShuffleSampler):
            return
        saved = (state["size"], state["batch_size"])
        check(
            saved == (sampler.size, self.batch_size),
            f"the checkpoint was trained on {saved[0]} examples in batches of {saved[1]}, this run "
            f"has {sampler.size} in batches of {self.batch_size}; resume with the same dataset "
            "settings (dataset.batch_size, dataset.train_subset, ...) or start a new run",
        )
        replicas, position = state.get("replicas", 1), state["position"]
        mid_epoch = 0 < position < state.get("length", position + 1)
        check(
            replicas == sampler.replicas or not mid_epoch,
            f"the checkpoint was written by {replicas} process(es) in the middle of epoch "
            f"{state['epoch']}, and this run has {sampler.replicas}; resume it with "
            f"trainer.devices={replicas}, or from a checkpoint written at the end of an epoch",
        )
        sampler.resume_at(state["epoch"], position)


def augment(
    images: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop after zero padding by `pad` pixels, and random horizontal flip, per example.

    `images` is [N, C, H, W] of any dtype on any device; the output has the same shape and dtype.
    Each example gets its own offsets (uniform in 0..2*pad) and, if `flip`, a coin for mirroring.
    Randomness comes from `generator` (on the images' device) or torch's global RNG.
    """
    check(pad >= 0, f"augment: pad must be >= 0 pixels, got pad={pad}")
    check(
        images.dim() == 4, f"augment: images must be [N, C, H, W], got shape {tuple(images.shape)}"
    )
    if pad == 0 and not flip:
        return images
    n, _, height, width = images.shape
    device = images.device
    if pad > 0:
        images = F.pad(images, (pad, pad, pad, pad))  # zeros: black after /255
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=device)
    rows = dy + torch.arange(height, device=device)  # [N, H] rows of the padded image
    cols = torch.arange(width, device=device).expand(n, width)
    if flip:
        # Mirroring is reading the crop's columns backwards, so it folds into the same gather.
        mirror = torch.rand((n, 1), generator=generator, device=device) < 0.5
        cols = torch.where(mirror, cols.flip(1), cols)
    cols = dx + cols  # [N, W] columns of the padded image
    batch = torch.arange(n, device=device)[:, None, None]
    # Advanced indices around the channel slice put the broadcast dims first: [N, H, W, C].
    out = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def cutout(
    images: torch.Tensor, size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017, as DARTS applies it): per example, zero a size x size square
    centred on a uniformly drawn pixel, clipped at the borders. `images` is [N, C, H, W]."""
    check(size >= 1, f"cutout: size must be >= 1 pixel, got {size}")
    n, _, height, width = images.shape
    device = images.device
    cy = torch.randint(0, height, (n, 1, 1), generator=generator, device=device)
    cx = torch.randint(0, width, (n, 1, 1), generator=generator, device=device)
    rows = torch.arange(height, device=device).view(1, -1, 1)
    cols = torch.arange(width, device=device).view(1, 1, -1)
    inside = (
        (rows >= cy - size // 2)
        & (rows < cy + size - size // 2)
        & (cols >= cx - size // 2)
        & (cols < cx + size - size // 2)
    )
    return images.masked_fill(inside.unsqueeze(1), 0)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std, in [0, 1] units, of uint8 images [N, C, H, W]."""
    check(images.dtype == torch.uint8, f"channel_stats needs uint8 images, got {images.dtype}")
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in range(images.shape[1]):
        # A 256-bin histogram gives exact moments without a float copy of the whole dataset.
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(max(float(var.sqrt()), 1e-3))  # a constant channel must not divide by zero
    return tuple(means), tuple(stds)
