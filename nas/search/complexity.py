"""Model size: parameter counts and multiply-accumulates (MACs) of stand-alone child networks."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.errors import check
from nas.spaces.base import Architecture, SearchSpace

_CACHE_SIZE = 4096
_cache: OrderedDict[tuple, tuple[int, int]] = OrderedDict()


def count_params(module: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of every Conv2d and Linear call on one dummy example of `input_shape`.

    `input_shape` excludes the batch dimension, e.g. (3, 32, 32). A conv costs
    out_elements * (in_channels / groups) * kh * kw; a linear layer out_elements * in_features.
    Biases, norms, pooling and activations are not counted (the usual convention).
    """
    shape = tuple(input_shape)
    check(
        len(shape) >= 1 and all(isinstance(s, int) and s >= 1 for s in shape),
        f"input_shape={input_shape!r} must be positive integers without the batch, e.g. (3, 32, 32)",
    )
    total = 0

    def conv_hook(mod: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = mod.kernel_size
        total += output.numel() * (mod.in_channels // mod.groups) * kh * kw

    def linear_hook(mod: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * mod.in_features

    handles = []
    for mod in module.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    param = next(module.parameters(), None)
    x = torch.zeros(
        (1, *shape),
        device=param.device if param is not None else None,
        dtype=param.dtype if param is not None and param.is_floating_point() else None,
    )
    was_training = module.training
    try:
        module.eval()  # no batch-norm statistics updated by the dummy pass
        with torch.no_grad():
            module(x)
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return int(total)


def child_size(
    space: SearchSpace, arch: Architecture, network_kwargs: Mapping, input_shape: Sequence[int]
) -> tuple[int, int]:
    """(params, MACs) of the stand-alone network of `arch`; cached by arch id and network settings."""
    key = (
        space.fingerprint,
        arch.id,
        tuple(sorted(dict(network_kwargs).items())),
        tuple(input_shape),
    )
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    net = space.build_child(arch, **network_kwargs)
    size = (count_params(net), count_macs(net, input_shape))
    _cache[key] = size
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)  # least recently used
    return size


def clear_size_cache() -> None:
    """Forget every cached child size."""
    _cache.clear()
