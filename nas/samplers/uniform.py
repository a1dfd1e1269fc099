"""Uniform single-path sampling (SPOS: Guo et al., "Single Path One-Shot NAS with Uniform Sampling",
ECCV 2020): every ghost batch trains one architecture drawn from the space's fixed distribution.

With one ghost batch per batch (`model.ghost_size` = the batch size) this is SPOS exactly: one
architecture per step, and the step costs what that architecture's stand-alone network costs.
"""

from __future__ import annotations

import random

import torch

from nas.samplers.base import Sampler, fixed_architectures
from nas.spaces.base import SearchSpace, Weights


class UniformSampler(Sampler):
    """One architecture per ghost batch from `space.sample` (uniform over each decision's subsets)."""

    name = "uniform"

    def sample(
        self, space: SearchSpace, ghosts: int, progress: float, generator: torch.Generator
    ) -> Weights:
        # the space samples with a random.Random; seeding it from the generator keeps the draws
        # reproducible and resumable with the training module's generator state
        rng = random.Random(int(torch.randint(2**62, (1,), generator=generator)))
        return space.encode([space.sample(rng) for _ in range(ghosts)])

    def eval_weights(self, space: SearchSpace, ghosts: int, batch_idx: int) -> Weights:
        # the all-on network is never trained: validate on fixed random architectures instead
        return fixed_architectures(space, ghosts, batch_idx)
