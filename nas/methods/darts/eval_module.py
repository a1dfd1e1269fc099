"""DartsEvalModule: DARTS's stand-alone retraining of one darts_cell architecture (Liu et al., ICLR
2019, train.py): `DartsEvalNetwork`, SGD (momentum 0.9, weight decay 3e-4 on every parameter),
cosine annealing per epoch from `lr` to 0, loss CE + 0.4 · auxiliary CE, drop-path probability
raised linearly over the epochs (drop_path · epoch / epochs). Gradient clipping (DARTS: norm 5) is
the trainer's `gradient_clip_val`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from nas.checkpointing import check_finite_loss
from nas.errors import check
from nas.modules.auxiliary import loss_with_auxiliary
from nas.modules.base import ClassifierModule
from nas.modules.child import load_architecture
from nas.spaces import Architecture
from nas.spaces.darts_cell import DartsCellSpace
from nas.spaces.darts_cell.eval_network import DartsEvalNetwork


def load_darts_architecture(arch: str | Path | Mapping | Architecture) -> Architecture:
    """`load_architecture`'s inputs, or a DARTS genotype text (read into the default darts_cell
    space)."""
    if isinstance(arch, str) and arch.lstrip().startswith("Genotype("):
        return DartsCellSpace().from_genotype(arch)
    return load_architecture(arch)


class DartsEvalModule(ClassifierModule):
    """DARTS's evaluation network and training recipe; val/test on the main logits only."""

    inputs = frozenset({"arch"})  # what train.py builds for it: the architecture to retrain

    def __init__(
        self,
        arch: str | Path | Mapping | Architecture,
        filters: int = 36,
        cells: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        lr: float = 0.025,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        auxiliary: bool = True,
        auxiliary_weight: float = 0.4,
        drop_path: float = 0.2,
    ):
        super().__init__()
        architecture = load_darts_architecture(arch)
        check(isinstance(lr, int | float) and lr > 0, f"model.lr={lr!r} must be > 0 (DARTS: 0.025)")
        check(0 <= momentum < 1, f"model.momentum={momentum!r} must lie in [0, 1) (DARTS: 0.9)")
        check(weight_decay >= 0, f"model.weight_decay={weight_decay!r} must be >= 0 (DARTS: 3e-4)")
        check(
            auxiliary_weight >= 0,
            f"model.auxiliary_weight={auxiliary_weight!r} must be >= 0 (DARTS: 0.4)",
        )
        self.save_hyperparameters(ignore=["arch"])
        self.hparams["arch"] = architecture.to_dict()  # plain values in the checkpoint
        self.hparams["arch_id"] = architecture.id
        self.arch = architecture
        self.net = DartsEvalNetwork(
            architecture, filters, cells, num_classes, in_channels, auxiliary, drop_path
        )
        self.num_params = self.net.num_params()  # without the auxiliary head, as DARTS reports
        self._init_metrics(num_classes)

    def forward(self, x: torch.Tensor):
        return self.net(x)

    def on_fit_start(self) -> None:
        if self.logger is not None:
            self.logger.log_metrics({"model/params": float(self.num_params)}, step=0)

    def on_train_epoch_start(self) -> None:
        epochs = self._epochs()
        self.net.drop_prob = self.hparams.drop_path * self.current_epoch / epochs
        self.log("train/drop_prob", self.net.drop_prob)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss, logits = loss_with_auxiliary(self, self(x), y, self.hparams.auxiliary_weight)
        check_finite_loss(self, loss)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True)
        return loss

    def test_step(self, batch, batch_idx):
        super().test_step(batch, batch_idx)
        self.log("test/params", float(self.num_params))

    def _epochs(self) -> int:
        """trainer.max_epochs: the length of the cosine and drop-path schedules."""
        epochs = self.trainer.max_epochs
        check(
            isinstance(epochs, int) and epochs >= 1,
            f"trainer.max_epochs={epochs!r}: DartsEvalModule schedules the learning rate and "
            f"drop-path per epoch; set trainer.max_epochs >= 1 (DARTS: 600)",
        )
        return epochs

    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.SGD(
            self.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay
        )
        epochs = self._epochs()
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs, eta_min=0.0)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
