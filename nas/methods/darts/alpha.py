"""What the differentiable methods share: architecture parameters α, their optimiser and data, and
the derived architecture.

α holds one logit per option of every decision, plus a "none" logit for decisions that may choose
nothing (an edge that may be absent: `min_k = 0`), as DARTS's `none` op (it takes probability mass
and contributes zeros). α trains on minibatches of the validation split (the bilevel problem's upper
level; DARTS's 50/50 split of the training images), with Adam outside the trainer's optimiser, so
the trainer counts weight steps only. The weights train on the training split with SGD (Nesterov
off unless `nesterov`), cosine annealing per epoch to `lr_min`, masked L2 (every path is on: plain
decay of conv and linear weights). At the end of training the derived architecture
(`SearchSpace.derive` of the option probabilities, "none" left out) is written as a search result to
`<run>/search/<method>/`.

`step_order`: "alpha_first" (DARTS's code: the α step, then the weight step of the same training
step) or "weights_first" (AutoDL-Projects' NAS-Bench-201 DARTS-V1 and GDAS searches: the weight
step, then the α step, at the weights it produced). The α step after the weights runs at the end of
the training batch; a checkpoint written between the two (a mid-epoch `last.ckpt`) records it as
pending, and the resumed run makes it first, so resuming stays exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas import distributed
from nas.checkpointing import check_finite_loss
from nas.data.base import in_memory_split
from nas.errors import check
from nas.modules.supernet import OneShotModule, validation_accuracy
from nas.results.derived import write_derived
from nas.samplers.base import Sampler
from nas.spaces import Architecture, SearchSpace, Weights, build_space

STEP_ORDERS = {
    "alpha_first": "the α step, then the weight step (DARTS's code)",
    "weights_first": "the weight step, then the α step at the new weights (AutoDL's NAS-Bench-201 "
    "DARTS-V1 and GDAS)",
}


class AlphaWeights(Sampler):
    """Validation and test use the module's `eval_path_weights` (e.g. softmax(α) for DARTS)."""

    def __init__(self, module: AlphaModule):
        self.module = module

    def eval_weights(self, space: SearchSpace, ghosts: int, batch_idx: int) -> Weights:
        with torch.no_grad():
            return self.module.eval_path_weights()

    def spec(self) -> dict:
        return {"name": f"{self.module.method}_alpha"}


class AlphaModule(OneShotModule):
    """A supernet trained jointly with architecture parameters α (subclasses: DARTS, GDAS)."""

    inputs = frozenset({"space"})  # α decides the path weights: no sampler
    learned_outside_trainer = ("alpha.",)  # the α step's own Adam
    # DARTS's search script; SGD without Nesterov, cosine to lr_min in the method's own schedule
    supernet_defaults = {"ghost_size": 64, "lr": 0.025, "l2": 3e-4, "nesterov": False}
    fixed_settings = {"lr_schedule": "constant", "warmup_steps": 0}

    def __init__(
        self,
        space: SearchSpace | Mapping,
        none_op: bool = True,
        arch_lr: float = 3e-4,
        arch_beta1: float = 0.5,
        arch_weight_decay: float = 1e-3,
        arch_seed: int = 0,
        lr_min: float = 1e-3,
        step_order: str = "alpha_first",
        **kwargs,
    ):
        """kwargs: the supernet's settings (`OneShotModule`; DARTS's defaults in `supernet_defaults`)."""
        check(
            step_order in STEP_ORDERS,
            f"model.step_order={step_order!r} is unknown; choose one of {list(STEP_ORDERS)} "
            "(DARTS's code: alpha_first; AutoDL's NAS-Bench-201 searches: weights_first)",
        )
        settings = self.supernet_settings(kwargs)
        space = build_space(space)
        lr = settings["lr"]
        check(arch_lr > 0, f"model.arch_lr={arch_lr!r} must be > 0 (DARTS: 3e-4)")
        check(0 <= arch_beta1 < 1, f"model.arch_beta1={arch_beta1!r} must lie in [0, 1)")
        check(arch_weight_decay >= 0, f"model.arch_weight_decay={arch_weight_decay!r} must be >= 0")
        check(0 <= lr_min < lr, f"model.lr_min={lr_min!r} must lie in [0, model.lr={lr})")
        super().__init__(space, AlphaWeights(self), **settings)
        self.has_none = [none_op and d.min_k == 0 for d in space.decisions]
        # DARTS initialises α to 1e-3 · N(0, 1)
        init = torch.Generator().manual_seed(arch_seed)
        self.alpha = nn.ParameterList(
            nn.Parameter(1e-3 * torch.randn(len(d.options) + extra, generator=init))
            for d, extra in zip(space.decisions, self.has_none, strict=True)
        )
        self.arch_optimizer = torch.optim.Adam(
            self.alpha.parameters(),
            lr=arch_lr,
            betas=(arch_beta1, 0.999),
            weight_decay=arch_weight_decay,
        )
        # weights_first: the step whose α step is still to come (set between the two steps)
        self._pending_arch_step: int | None = None

    # -- α ----------------------------------------------------------------------------------------
    def probabilities(self) -> dict[str, torch.Tensor]:
        """softmax(α) per decision, over its options (and "none", last, where it has one)."""
        return {d.name: a.softmax(0) for d, a in zip(self.space.decisions, self.alpha, strict=True)}

    def option_probabilities(self) -> dict[str, list[float]]:
        """The probabilities of the real options (no "none"), for derivation and logs."""
        probs = self.probabilities()
        return {d.name: probs[d.name][: len(d.options)].tolist() for d in self.space.decisions}

    def eval_path_weights(self) -> Weights:
        """Path weights of validation and test; subclasses decide (DARTS: softmax(α))."""
        raise NotImplementedError

    def train_path_weights(self, ghosts: int) -> Weights:
        """Path weights of a training step, carrying gradients to α."""
        raise NotImplementedError

    def derived(self) -> Architecture:
        return self.space.derive(self.option_probabilities())

    # -- data of the upper level --------------------------------------------------------------
    def arch_batch(self, step: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The α step's minibatch: the validation split in a fresh permutation per pass, chosen by
        the step number alone (`step`, default the current one; so a resumed run draws the same
        batches). Under DDP each process takes its own block of a global minibatch, as the
        training batches are shared out."""
        datamodule = self.trainer.datamodule
        split = in_memory_split(datamodule, "val", f"{type(self).__name__}'s α steps")
        world, rank = distributed.processes(self)
        size = min(datamodule.batch_size, len(split) // world)
        check(
            size >= 1,
            f"{world} processes need at least {world} validation examples for the α steps, "
            f"there are {len(split)}; raise dataset.val_size",
        )
        per_pass = len(split) // (size * world)
        step = self.global_step if step is None else step
        seed = np.random.SeedSequence([self.hparams.arch_seed, step // per_pass])
        order = torch.randperm(
            len(split), generator=torch.Generator().manual_seed(int(seed.generate_state(1)[0]))
        )
        start = ((step % per_pass) * world + rank) * size
        index = order[start : start + size]
        x = datamodule.normalize(split.images[index].to(self.device))
        return x, split.labels[index].to(self.device)

    def loss(self, x, y, weights) -> torch.Tensor:
        return F.cross_entropy(self.supernet(x, weights, self.hparams.ghost_size), y)

    def arch_gradients(self, x, y, xv, yv) -> list[torch.Tensor]:
        """∂L_val/∂α (first order); subclasses may do better (DARTS second order)."""
        ghosts = -(-xv.shape[0] // self.hparams.ghost_size)
        loss = self.loss(xv, yv, self.train_path_weights(ghosts))
        grads = torch.autograd.grad(loss, list(self.alpha), allow_unused=True)
        # a decision whose sampled option has no module (e.g. "none") gets no gradient this step
        return [
            torch.zeros_like(a) if g is None else g for a, g in zip(self.alpha, grads, strict=True)
        ]

    # -- training -------------------------------------------------------------------------------
    def arch_step(self, x, y, step: int) -> None:
        """One Adam step on α with the α minibatch of training step `step`."""
        xv, yv = self.arch_batch(step)
        grads = self.arch_gradients(x, y, xv, yv)
        self.arch_optimizer.zero_grad(set_to_none=True)
        for a, g in zip(self.alpha, grads, strict=True):
            a.grad = g.detach()
        distributed.average_gradients(self, self.alpha)  # DDP: one α on every process
        self.arch_optimizer.step()

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.hparams.step_order == "alpha_first":
            self.arch_step(x, y, self.global_step)
        else:
            if self._pending_arch_step is not None:  # resumed between a weight step and its α step
                self.arch_step(x, y, self._pending_arch_step)
            self._pending_arch_step = self.global_step  # made in on_train_batch_end
        ghosts = -(-x.shape[0] // self.hparams.ghost_size)
        weights = {k: v.detach() for k, v in self.train_path_weights(ghosts).items()}
        logits = self.supernet(x, weights, self.hparams.ghost_size)
        ce = F.cross_entropy(logits, y)
        l2 = self.supernet.l2_penalty(weights) if self.hparams.l2 else torch.zeros(())
        loss = ce + 0.5 * self.hparams.l2 * l2
        check_finite_loss(self, loss)
        self.train_acc(logits, y)
        self.log("train/loss", ce, prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """weights_first: the α step of this training step, now that its weight step is made."""
        if self._pending_arch_step is not None:
            step, self._pending_arch_step = self._pending_arch_step, None
            self.arch_step(*batch, step)

    def on_train_epoch_end(self) -> None:
        entropy = sum(
            float(-(p * p.clamp_min(1e-12).log()).sum()) for p in self.probabilities().values()
        )
        self.log(f"{self.method}/alpha_entropy", entropy)

    def configure_optimizers(self):
        """SGD on the weights, cosine annealing per epoch from lr to lr_min (DARTS)."""
        h = self.hparams
        optimizer = torch.optim.SGD(
            self.supernet.parameters(),
            lr=h.lr,
            momentum=h.momentum,
            nesterov=h.nesterov and h.momentum > 0,
        )
        epochs = max(1, int(self.trainer.max_epochs or 1))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs, eta_min=h.lr_min)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["arch_optimizer"] = self.arch_optimizer.state_dict()
        checkpoint["pending_arch_step"] = self._pending_arch_step

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if "arch_optimizer" in checkpoint:
            self.arch_optimizer.load_state_dict(checkpoint["arch_optimizer"])
        self._pending_arch_step = checkpoint.get("pending_arch_step")

    def on_fit_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        arch = self.derived()
        score = validation_accuracy(self, self.space.encode([arch]))
        probs = self.option_probabilities()
        write_derived(
            self,
            arch,
            Path(self.trainer.default_root_dir) / "search" / self.derives,
            score,
            {"probabilities": probs},
        )
