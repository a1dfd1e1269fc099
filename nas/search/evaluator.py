"""One-shot accuracy: an architecture's validation accuracy under the supernet's shared weights."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch

from nas.ghost_bn import ghost_sizes
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
    def accuracies(self, archs: Sequence[Architecture]) -> list[float]:
        """Fraction of validation examples each architecture classifies correctly.

        The architectures share every forward pass: each validation batch is repeated once per
        architecture, and each copy is a separate run of ghost batches with that architecture's masks
        (the supernet computes each path only for the copies that use it).
        """
        k = len(archs)
        rows = self.space.encode(archs)  # [k, options] per decision
        correct = torch.zeros(k, dtype=torch.long, device=self.batches[0][0].device)
        device_type = correct.device.type
        autocast = (
            torch.autocast(device_type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else nullcontext()
        )
        with autocast:
            for x, y in self.batches:
                sizes = tuple(ghost_sizes(len(x), self.ghost_size)) * k
                masks = {d: m.repeat_interleave(len(sizes) // k, dim=0) for d, m in rows.items()}
                packed = x.repeat(k, 1, 1, 1) if k > 1 else x
                logits = self.supernet(packed, masks, sizes)
                correct += (logits.argmax(1).view(k, -1) == y).sum(1)
        return (correct.double() / self.total).tolist()  # one host sync per group of architectures

    def __call__(self, archs: Sequence[Architecture]) -> list[dict]:
        results = []
        for arch, score in zip(archs, self.accuracies(archs), strict=True):
            row = {"oneshot_acc": score}
            if self.sizes is not None:
                row["params"], row["macs"] = self.sizes(arch)
            results.append(row)
        return results
