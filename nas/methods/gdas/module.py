"""GDAS (Dong & Yang, CVPR 2019): one op per decision sampled by Gumbel-softmax, straight through.

Every training step draws, per decision and ghost batch, h = softmax((α + g) / τ) with Gumbel noise
g, and uses the hard one-hot of its argmax as path weights, carrying the gradient of h (straight
through: w = onehot - h.detach() + h). Only the sampled op runs (its weight is 1, the others exactly
0, so the supernet gathers that one path), and the gradient reaches α through h. τ anneals linearly
from `tau_max` (10) to `tau_min` (0.1) over training. α trains on validation minibatches (first
order, as GDAS), the weights on training minibatches; validation uses the argmax architecture.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nas.errors import check
from nas.methods.darts.alpha import AlphaModule
from nas.spaces import SearchSpace, Weights


def gumbel_straight_through(
    logits: torch.Tensor, tau: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(hard one-hot rows with the soft rows' gradient, soft rows) for logits [rows, k]."""
    uniform = torch.rand(logits.shape, generator=generator).clamp(1e-10, 1 - 1e-10)
    gumbel = -torch.log(-torch.log(uniform)).to(logits)
    soft = ((logits + gumbel) / tau).softmax(-1)
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return hard - soft.detach() + soft, soft


class GDASModule(AlphaModule):
    """GDAS on any space: the sampled op of every decision per ghost batch, τ annealed."""

    method = "gdas"
    derives = "gdas"  # the argmax architecture of α, at the end of training

    def __init__(
        self, space: SearchSpace | Mapping, tau_max: float = 10.0, tau_min: float = 0.1, **kwargs
    ):
        check(
            0 < tau_min <= tau_max,
            f"model.tau_min={tau_min!r}, model.tau_max={tau_max!r}: need 0 < tau_min <= tau_max "
            "(GDAS: 0.1 and 10)",
        )
        super().__init__(space, **kwargs)

    def tau(self) -> float:
        """Linear from tau_max at the first step to tau_min at the last."""
        h = self.hparams
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 0
        progress = self.global_step / max(1, total - 1) if total and total != float("inf") else 0
        return h.tau_max - (h.tau_max - h.tau_min) * min(1.0, progress)

    def train_path_weights(self, ghosts: int) -> Weights:
        tau, weights = self.tau(), {}
        for d, a in zip(self.space.decisions, self.alpha, strict=True):
            rows, _ = gumbel_straight_through(a.expand(ghosts, -1), tau, self.mask_generator)
            weights[d.name] = rows[:, : len(d.options)]  # "none" sampled: the decision is off
        return weights

    def eval_path_weights(self) -> Weights:
        """The argmax architecture (0/1 weights), "none" included where it wins."""
        weights = {}
        for d, a in zip(self.space.decisions, self.alpha, strict=True):
            hard = torch.zeros_like(a).scatter_(0, a.argmax().view(1), 1.0)
            weights[d.name] = hard[: len(d.options)].unsqueeze(0)
        return weights

    def training_step(self, batch, batch_idx):
        self.log("gdas/tau", self.tau())
        return super().training_step(batch, batch_idx)
