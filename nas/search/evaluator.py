"""One-shot accuracy: an architecture's validation accuracy under the supernet's shared weights."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch

from nas.search.complexity import SizeTable
from nas.spaces.base import Architecture


class OneShotEvaluator:
    """Scores architectures on fixed, in-order validation batches held on the supernet's device.

    Batch norm computes statistics on the fly per group of `ghost_size` examples, exactly as in
    training (the paper's rule); batches are always the same, so scores are deterministic.
    """

    def __init__(
        self,
        supernet,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        ghost_size: int,
        sizes: SizeTable | None = None,
        autocast_dtype: torch.dtype | None = None,
    ):
        self.supernet = supernet.eval()
        self.space = supernet.space
        self.batches = list(zip(images.split(batch_size), labels.split(batch_size), strict=True))
        self.total = len(labels)
        self.ghost_size = ghost_size
        self.sizes = sizes
        self.autocast_dtype = autocast_dtype

    @torch.no_grad()
    def accuracy(self, arch: Architecture) -> float:
        """Fraction of validation examples classified correctly by `arch`'s paths."""
        masks = self.space.encode([arch])  # one row: the same architecture in every ghost batch
        correct = torch.zeros((), dtype=torch.long, device=self.batches[0][0].device)
        device_type = correct.device.type
        autocast = (
            torch.autocast(device_type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else nullcontext()
        )
        with autocast:
            for x, y in self.batches:
                correct += (self.supernet(x, masks, self.ghost_size).argmax(1) == y).sum()
        return correct.item() / self.total  # one host sync per architecture

    def __call__(self, archs: Sequence[Architecture]) -> list[dict]:
        results = []
        for arch in archs:
            row = {"oneshot_acc": self.accuracy(arch)}
            if self.sizes is not None:
                row["params"], row["macs"] = self.sizes(arch)
            results.append(row)
        return results
