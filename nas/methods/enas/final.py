"""EnasFinalModule: ENAS's final training of one architecture from scratch (Pham et al., ICML 2018;
the authors' `scripts/cifar10_macro_final.sh`, `cifar10_micro_final.sh`), on `StandaloneModule`.

The network is the final-mode network of the architecture's space (`nas/spaces/enas_macro/final.py`,
`nas/spaces/enas_micro/final.py`). The recipe, as the authors' code trains it:
- SGD with Nesterov momentum 0.9; cosine annealing with warm restarts per epoch, `lr` -> `lr_min`,
  T0 = 10, T_mult = 2 (310 epochs = 5 cycles, 630 = 6);
- weight decay on every parameter, batch-norm scales and shifts included: the code adds
  l2_reg · Σ w² to the loss (final scripts: 2e-4), a decay of 2 · l2_reg (`weight_decay: 4e-4`);
- no gradient clipping (the code's clipping is ineffective through a bug);
- micro: loss CE + 0.4 · CE of the auxiliary head, whose weights the code leaves out of the
  optimiser, so they keep their initial values while its loss trains the cells below it
  (`train_auxiliary_head: false`); drop-path with a probability growing with depth and with the
  fraction of the training steps done (`drop_path`: 1 - keep, the script's keep 0.6).

`arch`: what `StandaloneModule` reads (an architecture JSON, its dict), or an arc in the authors'
format (`--child_fixed_arc`: integers), read into `space`, which must then be a space of the
authors' numbering (search_space=enas_macro_authors for macro, enas_micro for micro).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import nn

from nas.checkpointing import check_finite_loss
from nas.errors import NasError, check
from nas.methods.enas.schedule import check_warm_restarts, sgd_warm_restarts
from nas.modules.auxiliary import loss_with_auxiliary
from nas.modules.child import StandaloneModule, load_architecture
from nas.spaces import Architecture, SearchSpace, build_space
from nas.spaces.enas_macro import EnasMacroSpace
from nas.spaces.enas_macro import parse_arc as parse_macro_arc
from nas.spaces.enas_macro.final import EnasMacroFinalNetwork
from nas.spaces.enas_micro import EnasMicroSpace
from nas.spaces.enas_micro.final import EnasMicroFinalNetwork
from nas.spaces.enas_micro.space import parse_arc as parse_micro_arc

ARC = re.compile(r"[\d\s,]+")


def load_enas_architecture(
    arch: str | Path | Mapping | Sequence[int] | Architecture, space: SearchSpace | Mapping | None
) -> Architecture:
    """`load_architecture`'s inputs, or an arc in the authors' format read into `space`."""
    if not arch_is_arc(arch):
        return load_architecture(arch)
    check(
        space is not None,
        "arch is an arc in the authors' format (integers); it reads into model.space, which is "
        "unset: set model.space=${search_space} with search_space=enas_macro_authors or enas_micro",
    )
    space = build_space(space)
    if isinstance(space, EnasMacroSpace):
        return parse_macro_arc(space, arch)
    check(
        isinstance(space, EnasMicroSpace),
        f"an arc in the authors' format reads into the enas_macro or enas_micro space, got "
        f"{space.name!r}",
    )
    return parse_micro_arc(space, arch)


class EnasFinalModule(StandaloneModule):
    """ENAS's final network of one macro or micro architecture, trained as the authors do."""

    def __init__(
        self,
        arch: str | Path | Mapping | Sequence[int] | Architecture,
        space: SearchSpace | Mapping | None = None,
        filters: int = 96,
        cells: int = 24,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        lr: float = 0.05,
        lr_min: float = 1e-3,
        restart_period: int = 10,
        restart_mult: int = 2,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 4e-4,
        dropout: float = 0.5,
        sep_as_conv: bool = True,
        auxiliary: bool = False,
        auxiliary_weight: float = 0.4,
        train_auxiliary_head: bool = False,
        drop_path: float = 0.0,
        group: str | None = None,
        channels_last: bool = False,
    ):
        architecture = load_enas_architecture(arch, space)
        check_warm_restarts(lr, lr_min, restart_period, restart_mult)
        check(
            isinstance(auxiliary_weight, int | float) and auxiliary_weight >= 0,
            f"model.auxiliary_weight={auxiliary_weight!r} must be >= 0 (the authors: 0.4)",
        )
        # a file keeps its name for the group of Table 1's rows; an arc is read already
        super().__init__(
            architecture if arch_is_arc(arch) else arch,
            filters,
            cells,
            stages,
            num_classes,
            in_channels,
            lr,
            momentum,
            nesterov,
            weight_decay,
            "cosine",  # with warm restarts: `configure_optimizers`
            0,
            group,
            channels_last,
        )
        self.hparams["space"] = None  # `arch` holds its space now
        self.num_params = self.net.num_params()  # without an auxiliary head, as the authors count
        if auxiliary and not train_auxiliary_head:
            self.net.auxiliary_head.requires_grad_(False)

    def build_network(self, arch: Architecture, **network) -> nn.Module:
        h = self.hparams
        if isinstance(arch.space, EnasMacroSpace):
            check(
                not h.auxiliary and not h.drop_path,
                f"model.auxiliary={h.auxiliary} and model.drop_path={h.drop_path}: the authors' "
                "final macro network has no auxiliary head and no drop-path (its code ignores "
                "both flags); set model.auxiliary=false model.drop_path=0",
            )
            return EnasMacroFinalNetwork(
                arch, **network, dropout=h.dropout, sep_as_conv=h.sep_as_conv
            )
        if isinstance(arch.space, EnasMicroSpace):
            return EnasMicroFinalNetwork(
                arch, **network, dropout=h.dropout, auxiliary=h.auxiliary, drop_path=h.drop_path
            )
        raise NasError(
            f"EnasFinalModule retrains enas_macro and enas_micro architectures, got one of "
            f"{arch.space.name!r}; use experiment=cifar_standalone for other spaces"
        )

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if getattr(self.net, "drop_path", 0):
            steps = max(1, int(self.trainer.estimated_stepping_batches))
            self.net.drop_progress = min(1.0, (self.global_step + 1) / steps)
            self.log("train/drop_prob", self.net.drop_path * self.net.drop_progress)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss, logits = loss_with_auxiliary(self, self(x), y, self.hparams.auxiliary_weight)
        check_finite_loss(self, loss)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True)
        return loss

    def configure_optimizers(self):
        h = self.hparams
        trained = [p for p in self.parameters() if p.requires_grad]
        return sgd_warm_restarts(
            trained,
            h.lr,
            h.momentum,
            h.nesterov,
            h.weight_decay,
            h.lr_min,
            h.restart_period,
            h.restart_mult,
        )


def arch_is_arc(arch) -> bool:
    """Whether `arch` is an arc in the authors' format (integers) rather than a file or a dict."""
    if isinstance(arch, str):
        return ARC.fullmatch(arch) is not None
    return isinstance(arch, Sequence)
