"""StandaloneModule: trains one architecture from scratch as a compact ChildNet."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from nas.checkpointing import check_finite_loss
from nas.errors import check
from nas.modules.base import ClassifierModule
from nas.modules.optim import sgd_with_schedule, validate_optimizer
from nas.spaces import Architecture, build_space


def load_architecture(arch: str | Path | Mapping | Architecture) -> Architecture:
    """An Architecture from a JSON file path, a JSON string, or its dict (with `space_spec`)."""
    if isinstance(arch, Architecture):
        return arch
    if isinstance(arch, Mapping):
        check(
            "space_spec" in arch,
            "architecture dict lacks 'space_spec'; use a JSON file written by search.py",
        )
        return Architecture.from_json(dict(arch), build_space(arch["space_spec"]))
    text = str(arch)
    if text.lstrip().startswith("{"):
        import json

        return load_architecture(json.loads(text))
    return Architecture.load(text)


class StandaloneModule(ClassifierModule):
    """Cross-entropy with ordinary batch norm and weight decay; logs params, val/test accuracy."""

    inputs = frozenset({"arch"})  # what train.py builds for it: the architecture to retrain

    def __init__(
        self,
        arch: str | Path | Mapping | Architecture,
        filters: int = 16,
        cells: int = 6,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 1e-4,
        lr_schedule: str = "cosine",
        warmup_steps: int = 0,
        group: str | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        architecture = load_architecture(arch)
        validate_optimizer(lr, momentum, lr_schedule, warmup_steps)
        check(weight_decay >= 0, f"model.weight_decay={weight_decay!r} must be >= 0")
        self.save_hyperparameters(ignore=["arch"])
        self.hparams["arch"] = architecture.to_dict()  # plain values in the checkpoint
        self.hparams["arch_id"] = architecture.id
        self.hparams["group"] = group or _group_from_name(arch)
        self.arch = architecture
        self.net = self.build_network(
            architecture,
            filters=filters,
            cells=cells,
            stages=stages,
            num_classes=num_classes,
            in_channels=in_channels,
        )
        if channels_last:  # NHWC: the layout cuDNN's bf16 convolutions run fastest in
            self.net = self.net.to(memory_format=torch.channels_last)
        self.num_params = sum(p.numel() for p in self.net.parameters())
        self._init_metrics(num_classes)

    def build_network(self, arch: Architecture, **network) -> torch.nn.Module:
        """The network trained: the space's stand-alone child (a subclass may build another, e.g.
        ENAS's final-mode networks; its own settings are in `self.hparams` by now)."""
        return arch.space.build_child(arch, **network)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def on_fit_start(self) -> None:
        if self.logger is not None:
            self.logger.log_metrics({"model/params": float(self.num_params)}, step=0)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        check_finite_loss(self, loss)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True)
        return loss

    def test_step(self, batch, batch_idx):
        super().test_step(batch, batch_idx)
        self.log("test/params", float(self.num_params))

    def configure_optimizers(self):
        h = self.hparams
        decay = [
            p for p in self.parameters() if p.dim() > 1
        ]  # conv/linear weights, not BN or biases
        rest = [p for p in self.parameters() if p.dim() <= 1]
        groups = [
            {"params": decay, "weight_decay": h.weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ]
        return sgd_with_schedule(
            groups,
            h.lr,
            h.momentum,
            h.nesterov,
            h.lr_schedule,
            h.warmup_steps,
            int(self.trainer.estimated_stepping_batches),
        )


def _group_from_name(arch) -> str | None:
    """Selection files are named `<group>_<i>_<id>.json`; the group labels Table 1's rows."""
    if isinstance(arch, str | Path) and str(arch).endswith(".json"):
        return Path(arch).stem.split("_")[0]
    return None
