"""GDAS (Dong & Yang, CVPR 2019): one op per decision sampled by Gumbel-softmax, straight through.

Every training step draws, per decision and ghost batch, h = softmax((α + g) / τ) with Gumbel noise
g, and uses the hard one-hot of its argmax as path weights, carrying the gradient of h (straight
through: w = onehot - h.detach() + h). Only the sampled op runs (its weight is 1, the others exactly
0, so the supernet gathers that one path). How α's gradient comes back is `estimator`:

- "sampled": through the sampled op's weight only, ∂L/∂h_k = Σ ∂L/∂out · op_k(x) (AutoDL-Projects'
  DARTS-space GDAS, `MixedOp.forward_gdas`: `ops[k](x) * h[k]`);
- "with_unsampled": AutoDL's NAS-Bench-201 GDAS (`NAS201SearchCell.forward_gdas`, the code behind
  the benchmark paper's GDAS row), which adds every other op's weight h_i (0 in value) to the edge's
  output: ∂L/∂h_i = Σ ∂L/∂out over the edge's outputs in every cell. Needs a supernet that adds
  them (`add_zero_weights`: NAS-Bench-201's).

τ follows the authors' schedule per epoch, tau_max - (tau_max - tau_min) · epoch / (epochs - 1)
(`tau_schedule="epoch"`; "step" anneals linearly over the steps instead). α trains on validation
minibatches (first order, as GDAS), the weights on training minibatches; validation uses the argmax
architecture.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nas.errors import check
from nas.methods.darts.alpha import AlphaModule
from nas.spaces import SearchSpace, Weights

ESTIMATORS = {
    "sampled": "α's gradient through the sampled op's weight only (AutoDL's DARTS-space GDAS)",
    "with_unsampled": "the other ops' zero weights added to each edge too (AutoDL's NAS-Bench-201 "
    "GDAS; search_space=nb201)",
}
TAU_SCHEDULES = {
    "epoch": "tau_max - (tau_max - tau_min) * epoch / (max_epochs - 1), the authors' schedule",
    "step": "linear over the training steps",
}


def gumbel_straight_through(
    logits: torch.Tensor, tau: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(hard one-hot rows with the soft rows' gradient, soft rows) for logits [rows, k]."""
    uniform = torch.rand(logits.shape, generator=generator).clamp(1e-10, 1 - 1e-10)
    gumbel = -torch.log(-torch.log(uniform)).to(logits)
    soft = ((logits + gumbel) / tau).softmax(-1)
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return hard - soft.detach() + soft, soft


def annealed_tau(tau_max: float, tau_min: float, done: float, total: float) -> float:
    """Linear from tau_max at `done` = 0 to tau_min at `done` = total - 1 (tau_max if total <= 1)."""
    progress = done / (total - 1) if total > 1 else 0.0
    return tau_max - (tau_max - tau_min) * min(1.0, progress)


class GDASModule(AlphaModule):
    """GDAS on any space: the sampled op of every decision per ghost batch, τ annealed."""

    method = "gdas"
    derives = "gdas"  # the argmax architecture of α, at the end of training

    def __init__(
        self,
        space: SearchSpace | Mapping,
        tau_max: float = 10.0,
        tau_min: float = 0.1,
        tau_schedule: str = "epoch",
        estimator: str = "sampled",
        **kwargs,
    ):
        check(
            0 < tau_min <= tau_max,
            f"model.tau_min={tau_min!r}, model.tau_max={tau_max!r}: need 0 < tau_min <= tau_max "
            "(GDAS: 0.1 and 10)",
        )
        check(
            tau_schedule in TAU_SCHEDULES,
            f"model.tau_schedule={tau_schedule!r} is unknown; choose one of {list(TAU_SCHEDULES)} "
            "(the authors anneal per epoch)",
        )
        check(
            estimator in ESTIMATORS,
            f"model.estimator={estimator!r} is unknown; choose "
            + " or ".join(f"{k!r} ({v})" for k, v in ESTIMATORS.items()),
        )
        super().__init__(space, **kwargs)
        if estimator == "with_unsampled":
            check(
                hasattr(self.supernet, "add_zero_weights"),
                f"model.estimator=with_unsampled adds the unsampled ops' weights to each edge, "
                f"which the {self.space.name!r} space's supernet does not do; use "
                "model.estimator=sampled (AutoDL's DARTS-space GDAS) or search_space=nb201",
            )
            self.supernet.add_zero_weights = True

    def tau(self) -> float:
        """τ now: per epoch over trainer.max_epochs, or per step over the training steps."""
        h = self.hparams
        if self._trainer is None:
            return h.tau_max
        if h.tau_schedule == "epoch":
            return annealed_tau(h.tau_max, h.tau_min, self.current_epoch, self.trainer.max_epochs)
        total = self.trainer.estimated_stepping_batches
        total = total if total and total != float("inf") else 0
        return annealed_tau(h.tau_max, h.tau_min, self.global_step, total)

    def on_fit_start(self) -> None:
        epochs = self.trainer.max_epochs
        check(
            self.hparams.tau_schedule != "epoch" or (epochs is not None and epochs >= 1),
            f"model.tau_schedule=epoch anneals tau over trainer.max_epochs, which is {epochs!r} "
            "(training limited by trainer.max_steps only); set trainer.max_epochs or use "
            "model.tau_schedule=step",
        )
        super().on_fit_start()

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
