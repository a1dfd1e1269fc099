"""A fixed panel of architectures and the two measurements of the paper's analysis on it.

Shared by the `OneShotPanel` callback (curves during training) and the studies (figures after
training), so a curve's last point and a study's number are the same computation. The images they
are measured on come from `nas.data.base` (`fixed_train_examples`, `first_val_examples`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from nas.errors import check
from nas.report.kl import symmetric_kl
from nas.search.evaluator import OneShotEvaluator
from nas.spaces import Architecture, SearchSpace


def draw_panel(
    space: SearchSpace, panel_size: int, panel_seed: int, include_all_on: bool = True
) -> list[Architecture]:
    """`panel_size` distinct architectures from `space.sample` with `random.Random(panel_seed)`.

    The same seed gives the same panel in every run of a sweep; the all-on architecture (the KL
    reference itself, so its KL is 0) is appended when `include_all_on`.
    """
    check(
        isinstance(panel_size, int) and panel_size >= 0,
        f"panel_size={panel_size!r} must be an integer >= 0 (architectures on the panel)",
    )
    check(
        panel_size <= space.count(),
        f"panel_size={panel_size} exceeds the {space.count():,} architectures of the space",
    )
    rng = random.Random(panel_seed)
    panel: list[Architecture] = []
    while len(panel) < panel_size:
        arch = space.sample(rng)
        if arch not in panel:
            panel.append(arch)
    if include_all_on:
        panel.append(space.all_on())
    check(bool(panel), "the panel is empty; set panel_size >= 1 or include_all_on=true")
    return panel


def _logits(supernet, space, arch, x: torch.Tensor, ghost: int, batch: int) -> torch.Tensor:
    masks = space.encode([arch])  # one row: the same architecture in every ghost batch
    return torch.cat([supernet(part, masks, ghost) for part in x.split(batch)]).float()


@torch.no_grad()
def panel_kl(
    supernet, space, archs: Sequence[Architecture], x: torch.Tensor, ghost: int, batch: int = 256
) -> list[float]:
    """Mean symmetrized KL D(p||q) + D(q||p) over `x` between the all-on model (p) and each arch (q)."""
    reference = _logits(supernet, space, space.all_on(), x, ghost, batch)
    return [
        symmetric_kl(reference, _logits(supernet, space, a, x, ghost, batch)).mean().item()
        for a in archs
    ]


def panel_accuracy(
    supernet,
    space,
    archs: Sequence[Architecture],
    x: torch.Tensor,
    y: torch.Tensor,
    ghost: int,
    batch: int = 256,
) -> list[float]:
    """One-shot accuracy of every arch on (x, y), computed as the search computes it."""
    return OneShotEvaluator(supernet, x, y, batch, ghost).accuracies(archs)
