"""The validation accuracy of a supernet's path weights: the score a method gives its derived
architecture (written as a search result by `nas.results.derived.write_derived`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch


@torch.no_grad()
def validation_accuracy(module, weights: Mapping[str, torch.Tensor]) -> float:
    """Accuracy of `module.supernet` with path `weights` on the datamodule's validation split."""
    datamodule = module.trainer.datamodule
    split, size = datamodule.val_split, datamodule.eval_batch_size
    was_training = module.supernet.training
    module.supernet.eval()
    correct = 0
    for start in range(0, len(split), size):
        x = datamodule.normalize(split.images[start : start + size].to(module.device))
        y = split.labels[start : start + size].to(module.device)
        correct += int((module.supernet(x, weights, module.eval_ghost_size).argmax(1) == y).sum())
    module.supernet.train(was_training)
    return correct / len(split)
