"""The ENAS controller as a search strategy: sample architectures from it, learn from their scores.

On an ENAS checkpoint it starts from the trained controller and, by default, only samples: that is
ENAS's derive step (score the samples on the validation split, keep the best). On any other
supernet it starts from a fresh controller and learns with REINFORCE from the one-shot scores it is
told (reward = score), `aggregate` architectures per update.

Replayable like every strategy: the controller runs on the CPU, its sampling generator is seeded
from the strategy's `random.Random`, and its updates depend only on the scores told, in order.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping

import torch

from nas.errors import check
from nas.methods.enas.controller import Controller
from nas.methods.enas.reinforce import Reinforce
from nas.search.strategies import Strategy
from nas.spaces.base import Architecture, SearchSpace


class ControllerStrategy(Strategy):
    """Asks samples of a controller; with `learn`, tells update it (REINFORCE, EMA baseline)."""

    name = "controller"

    def __init__(
        self,
        space: SearchSpace,
        rng: random.Random,
        module=None,
        learn: bool | None = None,
        aggregate: int = 20,
        lr: float = 1e-3,
        baseline_decay: float = 0.99,
        entropy_weight: float = 1e-4,
        controller: Mapping | None = None,
    ):
        super().__init__(space, rng)
        check(
            isinstance(aggregate, int) and aggregate >= 1,
            f"strategy.aggregate={aggregate!r} must be an integer >= 1 (scores per update)",
        )
        trained = getattr(module, "controller", None)
        if trained is not None:
            check(
                not controller,
                "strategy.controller settings apply to a fresh controller, but the checkpoint "
                "holds a trained one (ENAS); drop strategy.controller",
            )
            self.controller = copy.deepcopy(trained).cpu().float()
        else:
            settings = {"seed": rng.getrandbits(62), **dict(controller or {})}
            self.controller = Controller(space, **settings)
        self.learn = trained is None if learn is None else bool(learn)
        self.reinforce = Reinforce(self.controller, lr, baseline_decay, entropy_weight)
        self.generator = torch.Generator().manual_seed(rng.getrandbits(62))
        self.aggregate = aggregate
        self._told: list[tuple[Architecture, float]] = []
        self.metrics: dict[str, float] = {}

    def ask(self) -> Architecture:
        return self.controller.sample(1, self.generator)[0]

    def tell(self, arch: Architecture, score: float) -> None:
        super().tell(arch, score)
        if not self.learn:
            return
        self._told.append((arch, float(score)))
        if len(self._told) == self.aggregate:
            archs, scores = zip(*self._told, strict=True)
            self.metrics = self.reinforce.update(list(archs), list(scores))
            self._told = []
