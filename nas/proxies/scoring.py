"""A proxy's score of one architecture: its stand-alone child built from a fixed seed, scored once."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import torch

from nas.proxies.base import Proxy
from nas.spaces import Architecture


def proxy_score(
    proxy: Proxy,
    arch: Architecture,
    network: Mapping,
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int,
) -> tuple[float, float]:
    """(score, seconds) of `arch`'s child at initialisation (`seed`), in training mode.

    Every architecture's child starts from the same seed, so two runs give the same scores; the
    global random state is left as it was. A score that is not a number (a degenerate network:
    e.g. identical Jacobians for every image) ranks last, as -inf.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = arch.space.build_child(arch, **dict(network)).to(images.device).train()
    start = time.perf_counter()
    value = proxy.score(net, images, labels)
    seconds = time.perf_counter() - start
    return (value if not math.isnan(value) else -math.inf), seconds
