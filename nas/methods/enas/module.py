"""ENAS (Pham et al., ICML 2018): a controller learns which sub-graphs of the shared network to train.

Every epoch has two phases, as in the authors' code:
1. shared weights: one pass over the training split; every step trains the architecture the
   controller samples (one per ghost batch; with the default ghost size = batch size, one per step,
   the paper's M = 1), with cross-entropy and masked L2, SGD with Nesterov momentum and cosine
   annealing with warm restarts;
2. controller: `controller_steps` REINFORCE updates, each on `controller_aggregate` sampled
   architectures whose reward is the accuracy of the shared weights on one validation minibatch
   each (batch-norm statistics of that minibatch; `nas.methods.enas.reinforce`).
The controller phase runs right after the epoch's last training step, before validation, so the
epoch's checkpoint holds both phases. Validation reports the controller's greedy architecture.
Derive with `search.py ... strategy=controller` (samples from the trained controller, scores them on
the validation split and writes the ranking and selections like any search).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import torch

from nas.atomic import write_text
from nas.data.base import in_memory_split
from nas.errors import check
from nas.methods.enas.controller import Controller
from nas.methods.enas.reinforce import Reinforce
from nas.methods.enas.schedule import check_warm_restarts, sgd_warm_restarts
from nas.modules.supernet import OneShotModule
from nas.samplers.base import Sampler
from nas.spaces import SearchSpace, Weights, build_space


class ControllerSampler(Sampler):
    """Path weights from a learned controller: one sampled architecture per ghost batch.

    Validation batch i scores architectures drawn with seed i: the policy's expected accuracy,
    comparable across epochs. (Its greedy architecture is no fair measure: with skip probabilities
    near the 0.4 target, greedy takes no skip at all, a pattern that sampling almost never trains.)
    """

    def __init__(self, controller: Controller):
        self.controller = controller

    def sample(
        self, space: SearchSpace, ghosts: int, progress: float, generator: torch.Generator
    ) -> Weights:
        return space.encode(self.controller.sample(ghosts, generator))

    def eval_weights(self, space: SearchSpace, ghosts: int, batch_idx: int) -> Weights:
        return space.encode(
            self.controller.sample(ghosts, torch.Generator().manual_seed(batch_idx))
        )

    def spec(self) -> dict:
        return {"name": "enas_controller"}


class ENASModule(OneShotModule):
    """The supernet of `space` trained with ENAS's alternation; the controller is a submodule."""

    method = "enas"
    inputs = frozenset({"space"})  # the controller draws the architectures: no sampler
    learned_outside_trainer = ("controller.",)  # REINFORCE's own Adam
    # the authors' macro search script; cosine warm restarts replace the base's schedule
    supernet_defaults = {"filters": 36, "cells": 12, "ghost_size": 128, "lr": 0.05, "l2": 5e-4}
    fixed_settings = {"lr_schedule": "constant", "warmup_steps": 0}

    def __init__(
        self,
        space: SearchSpace | Mapping,
        controller: Mapping | None = None,
        controller_lr: float = 1e-3,
        controller_steps: int = 50,
        controller_aggregate: int = 20,
        baseline_decay: float = 0.99,
        entropy_weight: float = 1e-4,
        skip_weight: float = 0.8,
        reward_batch_size: int = 128,
        controller_seed: int = 0,
        lr_min: float = 5e-4,
        restart_period: int = 10,
        restart_mult: int = 2,
        **kwargs,
    ):
        """kwargs: the supernet's settings (`OneShotModule`; ENAS's defaults in `supernet_defaults`)."""
        settings = self.supernet_settings(kwargs)
        space = build_space(space)
        controller = plain_settings(controller or {})  # saved in checkpoints: plain values only
        for key, value, low in (
            ("controller_steps", controller_steps, 0),
            ("controller_aggregate", controller_aggregate, 1),
            ("reward_batch_size", reward_batch_size, 1),
        ):
            check(
                isinstance(value, int) and value >= low,
                f"model.{key}={value!r} must be an integer >= {low}",
            )
        check_warm_restarts(settings["lr"], lr_min, restart_period, restart_mult)
        # its initial weights and its sampling draw from two streams of controller_seed
        init_seed = int(np.random.SeedSequence([controller_seed, 1]).generate_state(1)[0])
        policy = Controller(space, **{"seed": init_seed, **controller})
        super().__init__(space, ControllerSampler(policy), **settings)
        self.controller = policy
        self.reinforce = Reinforce(
            policy, controller_lr, baseline_decay, entropy_weight, skip_weight
        )
        self.controller_generator = torch.Generator().manual_seed(controller_seed)

    # -- phase 2: the controller --------------------------------------------------------------
    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if batch_idx + 1 == self.trainer.num_training_batches:  # the epoch's pass is complete
            self.train_controller()

    def train_controller(self) -> dict[str, float]:
        """`controller_steps` REINFORCE updates on validation-minibatch accuracy; logs the means."""
        h = self.hparams
        if not h.controller_steps:
            return {}
        split = in_memory_split(self.trainer.datamodule, "val", "ENAS's rewards")
        images, labels = split.images, split.labels
        check(
            len(labels) >= h.reward_batch_size,
            f"model.reward_batch_size={h.reward_batch_size} exceeds the {len(labels)} validation "
            "examples; lower it or raise dataset.val_size",
        )
        was_training = self.supernet.training
        self.supernet.eval()  # ghost BN uses each minibatch's statistics either way
        totals: dict[str, float] = {}
        for _ in range(h.controller_steps):
            archs = self.controller.sample(h.controller_aggregate, self.controller_generator)
            rewards = self.rewards(archs, images, labels)
            for key, value in self.reinforce.update(archs, rewards, self).items():
                totals[key] = totals.get(key, 0.0) + value / h.controller_steps
        self.supernet.train(was_training)
        for key, value in totals.items():
            self.log(
                key,
                value,
                on_step=False,
                on_epoch=True,
                prog_bar=key.endswith("reward"),
                sync_dist=True,  # under DDP: the mean over the processes' samples
            )
        self._write_greedy()
        return totals

    @torch.no_grad()
    def rewards(self, archs, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
        """Accuracy of each architecture on its own random validation minibatch, in one pass: the
        minibatches are the ghost batches, so each gets its own batch-norm statistics."""
        n, size = len(archs), self.hparams.reward_batch_size
        index = torch.stack(
            [torch.randperm(len(labels), generator=self.controller_generator)[:size] for _ in archs]
        ).reshape(-1)
        x = self.trainer.datamodule.normalize(images[index].to(self.device))
        y = labels[index].to(self.device)
        with self.trainer.strategy.precision_plugin.forward_context():
            logits = self.supernet(x, self.space.encode(archs), size)
        correct = (logits.argmax(1) == y).view(n, size).float().mean(1)
        return correct.tolist()

    def _write_greedy(self) -> None:
        """The controller's current favourite, in `<log dir>/greedy_arch.json` and the W&B table."""
        arch = write_greedy(self.trainer, self.controller)
        if not self.trainer.is_global_zero:
            return
        if hasattr(self.logger, "log_text"):  # W&B: a row per epoch in the run's tables
            choices = json.dumps({k: list(v) for k, v in arch.choices.items()})
            self.logger.log_text(
                "controller/greedy",
                columns=["epoch", "arch_id", "choices"],
                data=[[self.current_epoch, arch.id, choices]],
            )

    # -- optimisers and state -----------------------------------------------------------------
    def configure_optimizers(self):
        """SGD (Nesterov) on the shared weights; cosine with warm restarts per epoch (T0, T_mult)."""
        h = self.hparams
        return sgd_warm_restarts(
            self.supernet.parameters(),
            h.lr,
            h.momentum,
            h.nesterov,
            0.0,  # the masked L2 of the training step is the decay
            h.lr_min,
            h.restart_period,
            h.restart_mult,
        )

    def own_generators(self) -> dict[str, tuple[torch.Generator, int]]:
        # each DDP process samples its own architectures and reward minibatches
        generators = super().own_generators()
        generators["controller_generator"] = (
            self.controller_generator,
            self.hparams.controller_seed,
        )
        return generators

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)  # the generators too
        checkpoint["reinforce"] = self.reinforce.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if "reinforce" in checkpoint:
            self.reinforce.load_state_dict(checkpoint["reinforce"])


def write_greedy(trainer, controller: Controller):
    """The controller's greedy architecture, written to `<log dir>/greedy_arch.json` by process 0;
    returns it. Every process calls it: under DDP `trainer.log_dir` is a broadcast from rank 0."""
    arch = controller.greedy()
    log_dir = trainer.log_dir
    if trainer.is_global_zero and log_dir:
        write_text(f"{log_dir}/greedy_arch.json", json.dumps(arch.to_dict(), indent=2) + "\n")
    return arch


def plain_settings(settings: Mapping) -> dict:
    """Nested mappings (e.g. Hydra's DictConfig) as plain dicts."""
    return {
        str(k): plain_settings(v) if isinstance(v, Mapping) else v
        for k, v in dict(settings).items()
    }
