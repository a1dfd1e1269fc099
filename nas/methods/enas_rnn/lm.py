"""Language-model training: truncated BPTT, perplexity, and the stand-alone recurrent network.

`LanguageModelModule` is what the ENAS recurrent supernet and a retrained cell share. Batches come
from `nas.data.text.TextDataModule` in stream order as (inputs [rows, T], targets [rows, T], i):
the hidden state carries from batch i to batch i + 1 (detached: the gradient is truncated at batch
boundaries, 35 steps) and starts at zero on batch 0, i.e. at every epoch and every evaluation. The
training state travels in checkpoints, so a killed run resumes with it. Metrics: `<stage>/loss`
(mean cross-entropy per token, nats), `<stage>/ppl` (exp of it) and `<stage>/acc` (next-token
accuracy). Shared weights: SGD, lr · decay^max(0, epoch - decay_after) (epochs from 0),
gradient-norm clipping.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from nas.checkpointing import check_finite_loss
from nas.errors import check
from nas.modules.child import _group_from_name, load_architecture
from nas.spaces import Architecture


def check_lm_optimizer(lr: float, lr_decay: float, decay_after: int, l2: float, grad_clip) -> None:
    """Stop with a clear message on an out-of-range shared-weight setting."""
    check(isinstance(lr, int | float) and lr > 0, f"model.lr={lr!r} must be > 0 (ENAS: 20)")
    check(0 < lr_decay <= 1, f"model.lr_decay={lr_decay!r} must lie in (0, 1] (ENAS: 0.96)")
    check(
        isinstance(decay_after, int) and decay_after >= 0,
        f"model.decay_after={decay_after!r} must be an integer >= 0 (ENAS: 15)",
    )
    check(l2 >= 0, f"model.l2={l2!r} must be >= 0 (ENAS: 1e-7)")
    check(
        grad_clip is None or grad_clip > 0,
        f"model.grad_clip={grad_clip!r} must be null (none) or > 0 (ENAS: 0.25)",
    )


class LanguageModelModule(L.LightningModule):
    """Truncated BPTT over ordered batches; subclasses define `train_run` and `eval_run`."""

    def _init_lm(self, num_classes: int) -> None:
        self._carried: dict[str, torch.Tensor | None] = {"train": None, "val": None, "test": None}
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_nll", MeanMetric())
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro"))

    # -- what subclasses compute ---------------------------------------------------------------
    def train_run(self, x: torch.Tensor, hidden) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [N, T, V], new hidden, extra loss) of one training batch from `hidden`."""
        raise NotImplementedError

    def eval_run(self, x: torch.Tensor, hidden) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [K·N, T, V], new hidden) of an evaluation batch: K models on the same batch."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        world = self.trainer.world_size
        check(
            world == 1,
            f"{type(self).__name__} trains on one device, but this run has {world} processes: each "
            "row of its batches is a token stream whose hidden state carries from batch to batch, "
            "and sharing the rows out over processes is not supported; run it without "
            "hardware=ddp and with trainer.devices=1",
        )

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        check(
            hasattr(datamodule, "stream") and hasattr(datamodule, "bptt"),
            f"{type(self).__name__} trains a language model: use a text dataset (dataset=ptb or "
            f"dataset=shakespeare), not {type(datamodule).__name__}",
        )

    # -- steps ---------------------------------------------------------------------------------
    def carried(self, stage: str, index: int) -> torch.Tensor | None:
        """The hidden state batch `index` of `stage` starts from: None (zeros) at batch 0."""
        return None if index == 0 else self._carried[stage]

    def training_step(self, batch, batch_idx: int):
        x, y, index = batch
        logits, hidden, extra = self.train_run(x, self.carried("train", index))
        self._carried["train"] = hidden.detach()  # truncated BPTT: no gradient across batches
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss = ce + extra
        check_finite_loss(self, loss)
        self.train_nll(ce.detach(), y.numel())
        self.train_acc(logits.detach().flatten(0, 1), y.flatten())
        size = y.shape[0]
        self.log("train/loss", ce, batch_size=size)
        self.log("train/ppl", torch.exp(ce.detach()), prog_bar=True, batch_size=size)
        self.log("train/acc", self.train_acc, batch_size=size)
        return loss

    def _eval_step(self, batch, stage: str) -> None:
        x, y, index = batch
        logits, hidden = self.eval_run(x, self.carried(stage, index))
        self._carried[stage] = hidden
        y = y.repeat(logits.shape[0] // y.shape[0], 1)  # the same targets for every model
        nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        getattr(self, f"{stage}_nll")(nll, y.numel())  # weighted: the mean over every token
        getattr(self, f"{stage}_acc")(logits.flatten(0, 1), y.flatten())
        size = y.shape[0]
        self.log(f"{stage}/loss", getattr(self, f"{stage}_nll"), batch_size=size)
        self.log(f"{stage}/acc", getattr(self, f"{stage}_acc"), batch_size=size)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_ppl(self, stage: str) -> None:
        metric = getattr(self, f"{stage}_nll")
        if metric.update_count:  # exp of the epoch's mean per-token loss
            self.log(f"{stage}/ppl", torch.exp(metric.compute()), prog_bar=stage == "val")

    def on_validation_epoch_end(self) -> None:
        self._log_ppl("val")

    def on_test_epoch_end(self) -> None:
        self._log_ppl("test")

    # -- optimisation ------------------------------------------------------------------------
    def lm_optimizer(self, params, weight_decay: float = 0.0) -> dict:
        """SGD on `params` (weight decay on matrices only), lr decayed by `lr_decay` per epoch
        after `decay_after` epochs."""
        h = self.hparams
        params = list(params)
        groups = [
            {"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.SGD(groups, lr=h.lr)
        decay, after = h.lr_decay, h.decay_after
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: decay ** max(0, epoch - after)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        """Clip the gradient's norm to `model.grad_clip` (ENAS: 0.25) before every step."""
        clip = self.hparams.grad_clip if gradient_clip_val is None else gradient_clip_val
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["bptt_hidden"] = self._carried["train"]  # where the next batch starts from
        checkpoint["module_class"] = f"{type(self).__module__}.{type(self).__qualname__}"

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._carried["train"] = checkpoint.get("bptt_hidden")


class StandaloneLMModule(LanguageModelModule):
    """A retrained cell: the stand-alone language model of `arch`, trained from scratch."""

    inputs = frozenset({"arch"})  # what train.py builds for it: the architecture to retrain

    def __init__(
        self,
        arch: str | Path | Mapping | Architecture,
        num_classes: int = 10000,
        in_channels: int = 1,
        hidden: int = 1000,
        dropout: float = 0.4,
        dropout_hidden: float = 0.25,
        dropout_input: float = 0.65,
        dropout_embed: float = 0.1,
        max_hidden_norm: float | None = 25.0,
        lr: float = 20.0,
        lr_decay: float = 0.96,
        decay_after: int = 15,
        l2: float = 1e-7,
        grad_clip: float | None = 0.25,
        group: str | None = None,
    ):
        super().__init__()
        architecture = load_architecture(arch)
        check_lm_optimizer(lr, lr_decay, decay_after, l2, grad_clip)
        self.save_hyperparameters(ignore=["arch"])
        self.hparams["arch"] = architecture.to_dict()
        self.hparams["arch_id"] = architecture.id
        self.hparams["group"] = group or _group_from_name(arch)
        self.arch = architecture
        self.net = architecture.space.build_child(
            architecture,
            num_classes=num_classes,
            in_channels=in_channels,
            hidden=hidden,
            dropout=dropout,
            dropout_hidden=dropout_hidden,
            dropout_input=dropout_input,
            dropout_embed=dropout_embed,
            max_hidden_norm=max_hidden_norm,
        )
        self.num_params = sum(p.numel() for p in self.net.parameters())
        self._init_lm(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train_run(self, x, hidden):
        logits, hidden = self.net.run(x, hidden)
        return logits, hidden, torch.zeros((), device=x.device)

    def eval_run(self, x, hidden):
        return self.net.run(x, hidden)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.logger is not None:
            self.logger.log_metrics({"model/params": float(self.num_params)}, step=0)

    def configure_optimizers(self):
        # L2 on the matrices (the embedding included): plain decay, since every weight is in use
        return self.lm_optimizer(self.parameters(), weight_decay=self.hparams.l2)
