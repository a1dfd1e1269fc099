"""What every fixed-distribution sampler is: the path weights of one training step, drawn afresh.

A sampler draws, for a batch cut into `ghosts` ghost batches, one row of path weights per ghost batch
and decision. A sampler that trains several models on the same batch in one step (FairNAS) returns
`copies(space) * ghosts` rows: the training module repeats the batch that many times, each copy a
separate run of ghost batches, and `loss_terms` says how the step's loss is made of them: by
default the models' cross-entropies summed, so one optimizer update gets the sum of the models'
gradients, and the masked L2 once per step over every path the step's models use (an optimizer's
weight decay, applied once per update), not once per model. Samplers keep no random state of their
own: they draw from the generator they are given (the training module's, saved in its checkpoints).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import NamedTuple

import torch

from nas.errors import check
from nas.spaces.base import SearchSpace, Weights

SAMPLERS: dict[str, type[Sampler]] = {}  # name -> class, filled as sampler modules are imported


class LossTerms(NamedTuple):
    """How one step's loss is made: `ce_scale` x the mean cross-entropy over all its rows (every
    model's examples) + `l2_scale` x the masked L2 of the path weights `decayed`."""

    ce_scale: float
    decayed: Weights
    l2_scale: float


class Sampler:
    """Draws the path weights of one training step; subclasses set `name` and define `sample`."""

    name: str = ""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            SAMPLERS[cls.name] = cls

    def sample(
        self, space: SearchSpace, ghosts: int, progress: float, generator: torch.Generator
    ) -> Weights:
        """Weights [copies(space) * ghosts, k] per decision, at `progress` in [0, 1] of training."""
        raise NotImplementedError

    def copies(self, space: SearchSpace) -> int:
        """How many models one step trains on the same batch (1: one per ghost batch)."""
        return 1

    def check_space(self, space: SearchSpace) -> None:
        """Stop with a clear message if this sampler cannot work on `space`."""

    def loss_terms(self, space: SearchSpace, weights: Weights) -> LossTerms:
        """The step's loss from the rows `weights` this sampler drew: the models' cross-entropies
        summed (the mean over all rows x copies) and the masked L2 once, over the paths any of the
        step's models uses (one model per step: the plain loss, cross-entropy + masked L2)."""
        copies = self.copies(space)
        return LossTerms(float(copies), once_per_step(weights, copies), 1.0)

    def spec(self) -> dict:
        """Plain-value settings (saved in checkpoints; `build_sampler(spec)` rebuilds the sampler)."""
        return {"name": self.name}

    def eval_weights(self, space: SearchSpace, ghosts: int, batch_idx: int) -> Weights | None:
        """Path weights for validation/test batch `batch_idx`; None: all-on (every path)."""
        return None

    def metrics(self, progress: float) -> dict[str, float]:
        """Values worth logging at `progress` (e.g. the current drop probability)."""
        return {}


def once_per_step(weights: Weights, copies: int) -> Weights:
    """The rows of one copy's ghost batches, a path on where any of the `copies` models uses it.

    `weights` holds `copies` runs of ghost batches, copy-major (model i on rows i*G ... i*G+G-1). Their
    masked L2 decays every path the step trains once, as an optimizer's weight decay does in one
    update: the shared trunk once, not once per model.
    """
    if copies == 1:
        return weights
    return {
        name: w.ne(0).view(copies, -1, w.shape[-1]).any(0).to(w.dtype)
        for name, w in weights.items()
    }


def fixed_architectures(space: SearchSpace, ghosts: int, seed: int) -> Weights:
    """One architecture per ghost batch from `space.sample`, the same for the same seed.

    Single-path samplers validate on these: their all-on network is never trained, so its accuracy
    says nothing; the mean accuracy of fixed random architectures tracks the supernet's quality.
    """
    rng = random.Random(seed)
    return space.encode([space.sample(rng) for _ in range(ghosts)])


def build_sampler(spec: Sampler | Mapping | None) -> Sampler:
    """A sampler from a `Sampler.spec()` dict (or the sampler itself); None: path dropout."""
    if isinstance(spec, Sampler):
        return spec
    spec = dict(spec or {"name": "path_dropout"})
    name = spec.pop("name", None)
    check(name in SAMPLERS, f"unknown sampler {name!r}; known samplers: {sorted(SAMPLERS)}")
    return SAMPLERS[name](**spec)


LEGACY_KEYS = {"dropout_rate": "rate", "dropout_schedule": "schedule", "keep_one_path": "keep_one"}


def sampler_spec(hparams: Mapping) -> dict:
    """The sampler spec of a supernet checkpoint's hyperparameters, also of checkpoints written
    before samplers were a group (their path-dropout settings were model keys)."""
    if isinstance(hparams.get("sampler"), Mapping):
        return dict(hparams["sampler"])
    legacy = {new: hparams[old] for old, new in LEGACY_KEYS.items() if old in hparams}
    return {"name": "path_dropout", **legacy}
