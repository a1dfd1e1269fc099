"""Scheduled path dropout (Bender et al. 2018, section 3.2).

A path into a node with k incoming paths (a block's 2+i inputs, or its ops) is dropped with probability
p(t) = ramp(t) · r^(1/k), so that at the end of the ramp the chance of dropping *all* k paths is r
whatever k is. Masks are drawn independently per ghost batch and per decision; every cell uses the same
masks. Kept paths are not rescaled (pure 0/1 multipliers).
"""

from __future__ import annotations

import torch

from nas.errors import check
from nas.samplers.base import Sampler
from nas.spaces.base import Masks, SearchSpace

SCHEDULES = ("linear", "constant")


class PathDropout(Sampler):
    """Draws per-ghost-batch path masks for a space at a point `progress` in [0, 1] of training."""

    name = "path_dropout"

    def __init__(self, rate: float = 0.1, schedule: str = "linear", keep_one: bool = False):
        check(
            isinstance(rate, int | float) and 0.0 < rate < 1.0,
            f"dropout rate r={rate!r} must lie strictly between 0 and 1 (the paper ends at r=0.1; "
            f"it is the chance that all paths into a node drop); set sampler.rate",
        )
        check(
            schedule in SCHEDULES,
            f"dropout schedule {schedule!r} is unknown; choose one of {list(SCHEDULES)}",
        )
        self.rate, self.schedule, self.keep_one = float(rate), schedule, keep_one

    def spec(self) -> dict:
        return {
            "name": self.name,
            "rate": self.rate,
            "schedule": self.schedule,
            "keep_one": self.keep_one,
        }

    def metrics(self, progress: float) -> dict[str, float]:
        return {"train/drop_prob_k7": self.drop_prob(7, progress)}

    def ramp(self, progress: float) -> float:
        """Schedule factor: linear from 0 at the start to 1 at the end, or 1 throughout."""
        if self.schedule == "constant":
            return 1.0
        return min(max(progress, 0.0), 1.0)

    def drop_prob(self, fan_in: int, progress: float) -> float:
        """Probability that one path of a node with `fan_in` paths is dropped: ramp · r^(1/k)."""
        return self.ramp(progress) * self.rate ** (1.0 / fan_in)

    def sample(
        self, space: SearchSpace, ghosts: int, progress: float, generator: torch.Generator
    ) -> Masks:
        """Masks [ghosts, k] per decision; with keep_one, a row with every path dropped keeps one."""
        masks = {}
        for d in space.decisions:
            p = self.drop_prob(d.fan_in, progress)
            keep = (torch.rand(ghosts, d.fan_in, generator=generator) >= p).float()
            if self.keep_one:
                empty = keep.sum(1) == 0
                pick = torch.randint(d.fan_in, (ghosts,), generator=generator)
                keep[empty, pick[empty]] = 1.0
            masks[d.name] = keep
        return masks
