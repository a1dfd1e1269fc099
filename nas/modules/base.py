"""What the supernet and stand-alone modules share: accuracy metrics and validation/test steps."""

from __future__ import annotations

import lightning as L
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy


class ClassifierModule(L.LightningModule):
    """Train/val/test accuracy and the evaluation steps; subclasses define forward and training."""

    def _init_metrics(self, num_classes: int) -> None:
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # which class wrote it, so a checkpoint copied out of its run still says how to load it
        # (python -m nas.export); the method modules record their method as well
        checkpoint.setdefault("module_class", f"{type(self).__module__}.{type(self).__qualname__}")

    def eval_logits(self, x, batch_idx: int):
        """Logits of a validation or test batch."""
        return self(x)

    def _eval_step(self, batch, batch_idx: int, metric, prefix: str):
        x, y = batch
        logits = self.eval_logits(x, batch_idx)
        metric(logits, y)
        # sync_dist: under DDP the epoch's loss is the mean over the processes (the accuracy, a
        # torchmetrics metric, sums their counts itself)
        self.log(
            f"{prefix}/loss", F.cross_entropy(logits, y), prog_bar=prefix == "val", sync_dist=True
        )
        self.log(f"{prefix}/acc", metric, prog_bar=prefix == "val")

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, self.val_acc, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, self.test_acc, "test")
