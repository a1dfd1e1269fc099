"""Strict fairness (FairNAS: Chu et al., "FairNAS: Rethinking Evaluation Fairness of Weight Sharing
Neural Architecture Search", ICCV 2021).

For spaces whose decisions each choose exactly one option, every step trains m models on the same
batch, m = the largest fan-in. Model i takes, for every decision, the i-th option of a random
permutation of its options, so every option of every decision is trained exactly once per step; a
decision with fewer options than m continues with fresh permutations (each option then trained
floor(m/k) or ceil(m/k) times).

The step's loss (`losses`, `decay`): by default the paper's Algorithm 1, the m models' gradients
accumulated before one update (their cross-entropies summed), with the masked L2 once per step over
every path trained (the paper's weight decay is an optimizer setting: once per update, whatever m).
`losses=mean` averages the m cross-entropies instead; `decay=per_model` puts the masked L2 in every
model's loss, so the weights all m models share (stem, reductions, classifier) are decayed m times
per step: this code's rule before it followed the paper, kept to measure the difference
(docs/quality.md, "FairNAS on digits").
"""

from __future__ import annotations

import math

import torch

from nas.errors import check
from nas.samplers.base import LossTerms, Sampler, fixed_architectures, once_per_step
from nas.spaces.base import SearchSpace, Weights


class FairSampler(Sampler):
    """m = max fan-in models per step; each option of each decision in exactly its share of them."""

    name = "fair"
    LOSSES = ("sum", "mean")
    DECAYS = ("once", "per_model")

    def __init__(self, losses: str = "sum", decay: str = "once"):
        check(
            losses in self.LOSSES,
            f"sampler.losses={losses!r} must be one of {list(self.LOSSES)}: how the m models' "
            "cross-entropies make the step's loss (sum: the paper's accumulated gradients)",
        )
        check(
            decay in self.DECAYS,
            f"sampler.decay={decay!r} must be one of {list(self.DECAYS)}: the masked L2 once per "
            "step (the paper: weight decay in the optimizer) or in every model's loss",
        )
        self.losses, self.decay = losses, decay

    def spec(self) -> dict:
        return {"name": self.name, "losses": self.losses, "decay": self.decay}

    def loss_terms(self, space: SearchSpace, weights: Weights) -> LossTerms:
        m = self.copies(space)
        ce_scale = float(m) if self.losses == "sum" else 1.0  # x the mean over all m models' rows
        if self.decay == "per_model":  # each model's own masked L2, combined like its loss
            return LossTerms(ce_scale, weights, ce_scale)
        return LossTerms(ce_scale, once_per_step(weights, m), 1.0)

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
