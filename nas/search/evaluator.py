"""One-shot accuracy: an architecture's validation accuracy under the supernet's shared weights."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch

from nas.ghost_bn import ghost_sizes
from nas.results.complexity import SizeTable
from nas.spaces.base import Architecture


def default_batch_archs(device: torch.device) -> int:
    """Architectures per ranking pass that pay on `device` (measured: benchmarks/throughput.py).

    On a GPU one pass per architecture is bound by kernel launches, so 8 share each pass; on the
    CPU there is nothing to amortise and gathering costs extra, so one per pass is fastest.
    """
    return 8 if torch.device(device).type == "cuda" else 1


def default_channels_last(device: torch.device) -> bool:
    """Whether ranking runs the supernet in NHWC on `device`: measured faster on the CPU (oneDNN's
    convolutions); the GPU keeps NCHW until its table says otherwise."""
    return torch.device(device).type == "cpu"


class OneShotEvaluator:
    """Scores architectures on fixed, in-order validation batches held on the supernet's device.

    Batch norm computes statistics on the fly per group of `ghost_size` examples, exactly as in
    training (the paper's rule); batches are always the same, so scores are deterministic.
    `channels_last` runs the supernet in NHWC (same scores, faster convolutions on some devices).
    With `recalibration` (a few fixed training batches), each architecture is instead scored as
    SPOS does: its stand-alone network with the shared weights, batch-norm statistics re-estimated
    on those batches, then evaluated with them (ordinary BN in eval mode).
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
        recalibration: Sequence[torch.Tensor] | None = None,
        channels_last: bool = False,
    ):
        if channels_last:  # NHWC weights and images (the module is converted in place)
            supernet = supernet.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        self.supernet = supernet.eval()
        self.recalibration = list(recalibration or [])
        self.space = supernet.space
        self.batches = list(zip(images.split(batch_size), labels.split(batch_size), strict=True))
        self.total = len(labels)
        self.ghost_size = ghost_size
        self.sizes = sizes
        self.autocast_dtype = autocast_dtype

    def _autocast(self, device_type: str):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def accuracies(self, archs: Sequence[Architecture]) -> list[float]:
        """Fraction of validation examples each architecture classifies correctly."""
        if self.recalibration:
            return [self._recalibrated_accuracy(arch) for arch in archs]
        return self._shared_pass_accuracies(archs)

    @torch.no_grad()
    def _recalibrated_accuracy(self, arch: Architecture) -> float:
        """Accuracy of `arch`'s child (shared weights) with BN statistics from the training batches."""
        child = self.supernet.extract(arch, copy_weights=True)
        for m in child.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the recalibration batches
        device_type = self.batches[0][0].device.type
        correct = 0
        with self._autocast(device_type):
            child.train()
            for x in self.recalibration:
                child(x)
            child.eval()
            for x, y in self.batches:
                correct += (child(x).argmax(1) == y).sum()
        return int(correct) / self.total

    @torch.inference_mode()
    def _shared_pass_accuracies(self, archs: Sequence[Architecture]) -> list[float]:
        """Per-ghost-batch statistics, the architectures sharing every forward pass.

        Each validation batch is repeated once per architecture, and each copy is a separate run of
        ghost batches with that architecture's masks (the supernet computes each path only for the
        copies that use it).
        """
        k = len(archs)
        rows = self.space.encode(archs)  # [k, options] per decision
        correct = torch.zeros(k, dtype=torch.long, device=self.batches[0][0].device)
        with self._autocast(correct.device.type):
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
