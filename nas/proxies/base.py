"""The proxy registry and the pieces several proxies share (weight layers, norm-free copies)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nas.errors import NasError

# (network, images, labels) -> score; higher predicts a better architecture
ProxyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]


@dataclass(frozen=True)
class Proxy:
    """A registered proxy: its score function, whether it reads images, and its source."""

    name: str
    score: ProxyFn
    needs_data: bool
    source: str


PROXIES: dict[str, Proxy] = {}


def register_proxy(name: str, needs_data: bool, source: str):
    """Decorator: register `fn(net, images, labels) -> float` as proxy `name`."""

    def register(fn: ProxyFn) -> ProxyFn:
        if name in PROXIES and PROXIES[name].score is not fn:
            raise NasError(f"proxy {name!r} is registered twice")
        PROXIES[name] = Proxy(name, fn, needs_data, source)
        return fn

    return register


def proxy_named(name: str) -> Proxy:
    """The proxy registered as `name`, or one error naming the known ones."""
    if name not in PROXIES:
        raise NasError(
            f"proxy={name!r} is not a known proxy; choose one of {sorted(PROXIES)} "
            "(conf/proxy/<name>.yaml)"
        )
    return PROXIES[name]


def weight_layers(net: nn.Module) -> list[nn.Module]:
    """The layers whose weights the pruning-at-init proxies score: every Conv2d and Linear."""
    return [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


class _PassThrough(nn.Module):
    """Stands for a removed norm; takes the ghost-size argument the networks' norms are called with."""

    def forward(self, x: torch.Tensor, *_args, **_kwargs) -> torch.Tensor:
        return x


def without_norms(net: nn.Module) -> nn.Module:
    """A copy of `net` with every batch norm replaced by the identity (SynFlow's setting)."""
    net = copy.deepcopy(net)
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, _PassThrough())
    return net
