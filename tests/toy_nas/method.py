"""A toy method: a supernet trained on the least-trained op of each layer (a counting sampler),
with its own search strategy (every architecture once, in a seeded order)."""

from __future__ import annotations

import random

import torch

from nas.modules.supernet import OneShotModule
from nas.samplers.base import Sampler
from nas.search.strategies import Strategy
from nas.spaces import build_space


class LeastTrainedSampler(Sampler):
    """Every ghost batch trains, in each layer, the op trained least so far (ties: first)."""

    def __init__(self, counts: torch.Tensor):
        self.counts = counts  # [decisions, options], a buffer of the module (saved in checkpoints)

    def sample(self, space, ghosts, progress, generator):
        weights = {}
        for i, d in enumerate(space.decisions):
            rows = torch.zeros(ghosts, len(d.options))
            for g in range(ghosts):
                j = int(self.counts[i].argmin())
                rows[g, j] = 1
                self.counts[i, j] += 1
            weights[d.name] = rows
        return weights

    def spec(self) -> dict:
        return {"name": "least_trained"}


class ToyModule(OneShotModule):
    method = "toy"
    inputs = frozenset({"space"})
    supernet_defaults = {"filters": 4, "cells": 1, "stages": 1, "ghost_size": 8}

    def __init__(self, space, **kwargs):
        settings = self.supernet_settings(kwargs)
        space = build_space(space)
        counts = torch.zeros(len(space.decisions), 3)
        super().__init__(space, LeastTrainedSampler(counts), **settings)
        self.register_buffer("counts", counts)


class ShuffledEnumeration(Strategy):
    """Asks every architecture of the space once, in an order drawn from its seed."""

    name = "shuffled"
    uses_scores = False

    def __init__(self, space, rng: random.Random, shuffle: bool = True):
        super().__init__(space, rng)
        self.archs = list(space.enumerate())
        if shuffle:
            rng.shuffle(self.archs)
        self.asked = 0

    def ask(self):
        arch = self.archs[self.asked % len(self.archs)]
        self.asked += 1
        return arch
