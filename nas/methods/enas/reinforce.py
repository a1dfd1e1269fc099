"""REINFORCE for the ENAS controller: a moving-average baseline, an entropy bonus, Adam.

One `update(archs, rewards)` is one optimizer step on the controller (the authors aggregate the
gradients of `num_aggregate` samples into one step). For each sample, in order:
    R = reward + entropy_weight · entropy          (the entropy is detached: a bonus, not a loss)
    advantage = R - b,  then  b <- b - (1 - baseline_decay) · (b - R)
and the loss is  mean(-log π(arch) · advantage) + skip_weight · mean(skip KL)  (the macro skip
penalty is a differentiable regulariser, as in the code). The advantage uses the baseline from before
the sample; the baseline starts at 0, as in the code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nas import distributed
from nas.errors import check
from nas.methods.enas.controller import Controller
from nas.spaces.base import Architecture


class Reinforce:
    """Trains `controller` from (architecture, reward) pairs; its state goes into checkpoints."""

    def __init__(
        self,
        controller: Controller,
        lr: float = 1e-3,
        baseline_decay: float = 0.99,
        entropy_weight: float = 1e-4,
        skip_weight: float = 0.8,
        adam_beta1: float = 0.0,
        adam_eps: float = 1e-3,
    ):
        check(lr > 0, f"controller lr={lr!r} must be > 0 (paper: 3.5e-4; code: 1e-3 / 3.5e-3)")
        check(
            0 <= baseline_decay < 1,
            f"baseline_decay={baseline_decay!r} must lie in [0, 1) (code: 0.99; enas_lm: 0.999)",
        )
        check(entropy_weight >= 0, f"entropy_weight={entropy_weight!r} must be >= 0 (1e-4)")
        check(skip_weight >= 0, f"skip_weight={skip_weight!r} must be >= 0 (macro code: 0.8)")
        self.controller = controller
        self.baseline_decay, self.entropy_weight = baseline_decay, entropy_weight
        self.skip_weight = skip_weight
        self.optimizer = torch.optim.Adam(
            controller.parameters(), lr=lr, betas=(adam_beta1, 0.999), eps=adam_eps
        )
        self.baseline = 0.0

    def update(
        self, archs: Sequence[Architecture], rewards: Sequence[float], module=None
    ) -> dict[str, float]:
        """One step on the samples `archs` with their rewards; returns what to log.

        Under DDP (`module`: the training module, whose trainer runs several processes) every
        process passes its own samples: the baseline runs over all processes' rewards in rank order
        and the gradients are averaged, so every process takes the step one process would take on
        all the samples, and the controllers stay identical.
        """
        check(
            len(archs) == len(rewards) >= 1,
            f"REINFORCE needs one reward per architecture, got {len(rewards)} for {len(archs)}",
        )
        out = self.controller(archs=archs)  # log-probabilities under the current policy
        mine = torch.as_tensor(rewards, dtype=torch.float64) + self.entropy_weight * (
            out.entropy.detach().double().cpu()
        )
        everyone = distributed.gather(module, mine) if module is not None else mine
        advantages = []
        for value in everyone.tolist():
            advantages.append(value - self.baseline)
            self.baseline -= (1 - self.baseline_decay) * (self.baseline - value)
        _, rank = distributed.processes(module)
        own = advantages[rank * len(archs) : (rank + 1) * len(archs)]
        advantage = torch.tensor(own, dtype=out.log_prob.dtype, device=out.log_prob.device)
        loss = -(out.log_prob * advantage).mean() + self.skip_weight * out.skip_kl.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if module is not None:
            distributed.average_gradients(module, self.controller.parameters())
        self.optimizer.step()
        return {
            "controller/reward": sum(float(r) for r in rewards) / len(rewards),
            "controller/baseline": self.baseline,
            "controller/entropy": float(out.entropy.mean()),
            "controller/loss": float(loss.detach()),
            "controller/skip_rate": float(out.skip_rate.mean()),
            "controller/log_prob": float(out.log_prob.detach().mean()),
        }

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = float(state["baseline"])
