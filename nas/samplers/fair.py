"""Strict fairness (FairNAS: Chu et al., "FairNAS: Rethinking Evaluation Fairness of Weight Sharing
Neural Architecture Search", ICCV 2021).

For spaces whose decisions each choose exactly one option, every step trains m models on the same
batch, m = the largest fan-in. Model i takes, for every decision, the i-th option of a random
permutation of its options, so every option of every decision is trained exactly once per step; a
decision with fewer options than m continues with fresh permutations (each option then trained
floor(m/k) or ceil(m/k) times). The m losses are summed before one optimizer update, so the update
uses the sum of the m models' gradients.
"""

from __future__ import annotations

import math

import torch

from nas.errors import check
from nas.samplers.base import Sampler, fixed_architectures
from nas.spaces.base import SearchSpace, Weights


class FairSampler(Sampler):
    """m = max fan-in models per step; each option of each decision in exactly its share of them."""

    name = "fair"

    def check_space(self, space: SearchSpace) -> None:
        multi = [d for d in space.decisions if not d.min_k == d.max_k == 1]
        check(
            not multi,
            f"sampler=fair needs decisions that choose exactly one option each, but space "
            f"{space.name!r} has {multi[0].name!r} choosing {multi[0].min_k}..{multi[0].max_k} "
            f"of {len(multi[0].options)}; use sampler=uniform (or a single-choice space such as nb201)"
            if multi
            else "",
        )

    def copies(self, space: SearchSpace) -> int:
        # the space was checked once, when the training module was built (`check_space`)
        return max(d.fan_in for d in space.decisions)

    def sample(
        self, space: SearchSpace, ghosts: int, progress: float, generator: torch.Generator
    ) -> Weights:
        m = self.copies(space)
        weights = {}
        for d in space.decisions:
            k = d.fan_in
            cycles = [torch.randperm(k, generator=generator) for _ in range(math.ceil(m / k))]
            chosen = torch.cat(cycles)[:m]
            rows = torch.zeros(m, k)
            rows[torch.arange(m), chosen] = 1.0
            weights[d.name] = rows.repeat_interleave(ghosts, dim=0)  # model i on copy i's ghosts
        return weights

    def eval_weights(self, space: SearchSpace, ghosts: int, batch_idx: int) -> Weights:
        # the all-on network is never trained: validate on fixed random architectures instead
        return fixed_architectures(space, ghosts, batch_idx)
