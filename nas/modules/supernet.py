"""OneShotModule: trains a supernet with a fixed-distribution sampler, ghost batch norm and masked L2.

The sampler (Hydra group `sampler/`) decides the path weights of every step: scheduled path dropout
(Bender et al., the default), uniform single paths (SPOS) or strict fairness (FairNAS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F

from nas.checkpointing import check_finite_loss
from nas.distributed import ProcessGenerators
from nas.errors import check
from nas.ghost_bn import num_ghosts
from nas.modules.base import ClassifierModule
from nas.modules.method import MethodModule
from nas.modules.optim import sgd_with_schedule, validate_optimizer
from nas.samplers import Sampler, build_sampler
from nas.samplers.base import LEGACY_KEYS, sampler_spec
from nas.spaces import SearchSpace, build_space


class OneShotModule(MethodModule, ClassifierModule):
    """Cross-entropy + masked L2 on the supernet; validation and test use the all-on weights (or,
    for single-path samplers, fixed random architectures: see `Sampler.eval_weights`).

    Bender et al.'s method (and SPOS, FairNAS through their samplers), and the base of the methods
    that train a supernet of a search space; they pass its settings on through `**kwargs`."""

    method = "oneshot"
    inputs = frozenset({"space", "sampler"})
    # A method built on this class passes these settings on through `**kwargs` (`supernet_settings`),
    # stating only where its defaults differ and which settings it fixes (then not settings of it).
    supernet_defaults: ClassVar[Mapping] = {}
    fixed_settings: ClassVar[Mapping] = {}

    def __init__(
        self,
        space: SearchSpace | Mapping,
        sampler: Sampler | Mapping | None = None,
        filters: int = 16,
        cells: int = 6,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        ghost_size: int = 32,
        eval_ghost_size: int | None = None,
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        l2: float = 1e-4,
        lr_schedule: str = "cosine",
        warmup_steps: int = 0,
        mask_seed: int = 0,
    ):
        super().__init__()
        space = build_space(space)
        check(
            isinstance(ghost_size, int) and ghost_size >= 1,
            f"model.ghost_size={ghost_size!r} must be an integer >= 1 (the paper uses 32)",
        )
        check(
            eval_ghost_size is None or (isinstance(eval_ghost_size, int) and eval_ghost_size >= 1),
            f"model.eval_ghost_size={eval_ghost_size!r} must be null (= ghost_size) or an integer >= 1",
        )
        check(l2 >= 0, f"model.l2={l2!r} must be >= 0 (the masked L2 coefficient; paper: 1e-4)")
        sampler = build_sampler(sampler)  # None: path dropout with its defaults
        sampler.check_space(space)
        self.save_hyperparameters(ignore=["space", "sampler"])
        self.hparams["space"] = space.spec()  # plain values: the checkpoint rebuilds the space
        self.hparams["sampler"] = sampler.spec()
        # what a method fixes is not a setting of it: its hyperparameters must rebuild it
        fixed = [*self.fixed_settings, *([] if "sampler" in self.inputs else ["sampler"])]
        for key in fixed:
            self.hparams.pop(key, None)
        self.space, self.sampler = space, sampler
        self.supernet = space.build_supernet(
            filters=filters,
            cells=cells,
            stages=stages,
            num_classes=num_classes,
            in_channels=in_channels,
        )
        validate_optimizer(lr, momentum, lr_schedule, warmup_steps)
        self.mask_generator = torch.Generator().manual_seed(mask_seed)
        self.process_generators = ProcessGenerators(self.own_generators)
        self._init_metrics(num_classes)

    @classmethod
    def supernet_settings(cls, given: Mapping) -> dict:
        """The settings of this class a method passes on: `given`, over the method's own defaults,
        with what it fixes (refused when given: they are not settings of the method)."""
        refused = sorted(set(given) & {*cls.fixed_settings, "sampler"})
        check(
            not refused,
            f"{', '.join(f'model.{k}' for k in refused)}: not a setting of {cls.__name__}, which "
            f"fixes {dict(cls.fixed_settings) or 'its sampler'}; drop it",
        )
        return {**cls.supernet_defaults, **given, **cls.fixed_settings}

    def own_generators(self) -> dict[str, tuple[torch.Generator, int]]:
        """The generators this module draws from itself, by checkpoint key, with their seeds; each
        DDP process draws its own stream of each (subclasses add theirs)."""
        return {"mask_generator": (self.mask_generator, self.hparams.mask_seed)}

    @property
    def eval_ghost_size(self) -> int:
        return self.hparams.eval_ghost_size or self.hparams.ghost_size

    def forward(self, x: torch.Tensor, weights=None, ghost: int | None = None) -> torch.Tensor:
        """Logits; all-on weights and the evaluation ghost size unless given (validation, test)."""
        return self.supernet(x, weights, ghost or self.eval_ghost_size)

    def eval_logits(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """All-on weights, or the sampler's fixed validation architectures (single-path samplers)."""
        ghost = self.eval_ghost_size
        weights = self.sampler.eval_weights(self.space, num_ghosts(x.shape[0], ghost), batch_idx)
        return self(x, weights, ghost)

    def progress(self) -> float:
        """Fraction of training done, for the sampler's schedule (0 before the first step)."""
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 0
        return self.global_step / total if total and total != float("inf") else 0.0

    def setup(self, stage: str) -> None:
        # read by DDP when Lightning wraps the module, which happens after this hook
        self._ddp_params_and_buffers_to_ignore = [
            name
            for name, _ in self.named_parameters()
            if name.startswith(self.learned_outside_trainer)
        ]

    def on_fit_start(self) -> None:
        batch = getattr(self.trainer.datamodule, "batch_size", None)
        ghost = self.hparams.ghost_size
        check(
            batch is None or batch % ghost == 0,
            f"model.ghost_size={ghost} does not divide dataset.batch_size={batch}; "
            f"choose a ghost size that divides the batch (e.g. {_divisor_near(batch, ghost)})",
        )
        # different workers must draw different masks (the paper's 16 workers each had their own)
        self.process_generators.seed(self)

    def sampled_loss(self, x: torch.Tensor, y: torch.Tensor, progress: float) -> dict:
        """Loss of one step on (x, y) with freshly sampled path weights, over the step's models as
        the sampler's `loss_terms` combine them.

        Returns {"loss", "ce" (mean per model), "l2", "logits", "targets"} (logits and targets of
        every model, the batch repeated once per model).
        """
        ghost = self.hparams.ghost_size
        weights = self.sampler.sample(
            self.space, num_ghosts(x.shape[0], ghost), progress, self.mask_generator
        )
        copies = self.sampler.copies(self.space)
        if copies > 1:  # several models on the same batch: each copy a separate run of ghosts
            x, y = x.repeat(copies, 1, 1, 1), y.repeat(copies)
        logits = self.supernet(x, weights, ghost)
        ce = F.cross_entropy(logits, y)
        # several models: the sampler says how their losses combine (FairNAS: cross-entropies
        # summed, the masked L2 once per step over the paths they use, not once per model)
        terms = self.sampler.loss_terms(self.space, weights)
        l2 = (
            self.supernet.l2_penalty(terms.decayed)
            if self.hparams.l2
            else torch.zeros((), device=x.device)
        )
        loss = terms.ce_scale * ce + terms.l2_scale * 0.5 * self.hparams.l2 * l2
        return {"loss": loss, "ce": ce, "l2": l2, "logits": logits, "targets": y}

    def training_step(self, batch, batch_idx):
        progress = self.progress()
        out = self.sampled_loss(*batch, progress)
        check_finite_loss(self, out["loss"])
        self.train_acc(out["logits"], out["targets"])
        self.log("train/loss", out["ce"], prog_bar=True)
        self.log("train/l2", out["l2"])
        self.log("train/acc", self.train_acc, prog_bar=True)
        for name, value in self.sampler.metrics(progress).items():
            self.log(name, value)
        return out["loss"]

    def configure_optimizers(self):
        # weight decay is the masked L2 term of the loss, so the optimizer's own decay stays 0
        h = self.hparams
        return sgd_with_schedule(
            self.parameters(),
            h.lr,
            h.momentum,
            h.nesterov,
            h.lr_schedule,
            h.warmup_steps,
            int(self.trainer.estimated_stepping_batches),
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.process_generators.save(self, checkpoint)
        self.checkpoint_identity(checkpoint)  # which module to rebuild from the hyperparameters
        checkpoint["space_fingerprint"] = self.space.fingerprint

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.process_generators.load(self, checkpoint)

    @classmethod
    def check_searchable(cls, checkpoint, path) -> None:
        hparams = checkpoint.get("hyper_parameters", {})
        check(
            isinstance(hparams.get("space"), dict) and "ghost_size" in hparams,
            f"checkpoint {str(path)!r} is not a one-shot supernet checkpoint (no search space in "
            "its hyperparameters); pass a checkpoint written by `train.py` with model=oneshot",
        )

    @classmethod
    def restore_arguments(cls, hparams) -> dict:
        # the sampler as its spec (checkpoints of earlier versions kept its settings loose)
        kwargs = {k: v for k, v in hparams.items() if k not in LEGACY_KEYS}
        if "sampler" in cls.inputs:
            kwargs["sampler"] = sampler_spec(hparams)
        return kwargs


def _divisor_near(batch: int | None, ghost: int) -> int:
    """The divisor of `batch` closest to `ghost` (for the error message)."""
    if not batch:
        return ghost
    return min((d for d in range(1, batch + 1) if batch % d == 0), key=lambda d: abs(d - ghost))


@torch.no_grad()
def validation_accuracy(module: OneShotModule, weights: Mapping[str, torch.Tensor]) -> float:
    """Accuracy of `module.supernet` with path `weights` on the datamodule's validation split:
    the one-shot score of an architecture a method derives itself (DARTS, GDAS, BayesNAS)."""
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
