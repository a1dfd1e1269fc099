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
    return sum(macs_by_module(module, input_shape).values())


def macs_by_module(module: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """MACs of each Conv2d/Linear submodule (by name) in one batch-1 pass (see `count_macs`)."""
    shape = tuple(input_shape)
    check(
        len(shape) >= 1 and all(isinstance(s, int) and s >= 1 for s in shape),
        f"input_shape={input_shape!r} must be positive integers without the batch, e.g. (3, 32, 32)",
    )
    macs: dict[str, int] = {}

    def hook_for(name: str):
        def hook(mod: nn.Module, _inputs, output: torch.Tensor) -> None:
            if isinstance(mod, nn.Conv2d):
                kh, kw = mod.kernel_size
                per_output = (mod.in_channels // mod.groups) * kh * kw
            else:
                per_output = mod.in_features
            macs[name] = macs.get(name, 0) + output.numel() * per_output

        return hook

    handles = [
        mod.register_forward_hook(hook_for(name))
        for name, mod in module.named_modules()
        if isinstance(mod, nn.Conv2d | nn.Linear)
    ]
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
    return {name: int(v) for name, v in macs.items()}


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
    with torch.device("meta"):  # shapes only: no weights allocated, no arithmetic done
        net = space.build_child(arch, **network_kwargs)
    size = (count_params(net), count_macs(net, input_shape))
    _cache[key] = size
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)  # least recently used
    return size


class SizeTable:
    """(params, MACs) of any child of a supernet without building it.

    A child's modules are a subset of the supernet's, with the same shapes and resolutions, so one
    meta-device pass over the supernet gives every module's share, grouped by the path it belongs to
    (`parameter_paths`, declared by the network); a child's size is the sum over the paths it uses
    (`paths_used`). Tested equal to `child_size` of the built child for every space.
    """

    def __init__(self, space: SearchSpace, network_kwargs: Mapping, input_shape: Sequence[int]):
        with torch.device("meta"):
            supernet = space.build_supernet(**network_kwargs)
        self._paths_used = supernet.paths_used
        paths = supernet.parameter_paths()
        self.params: dict[tuple, int] = {}
        self.macs: dict[tuple, int] = {}
        for name, p in supernet.named_parameters():
            self.params[paths[name]] = self.params.get(paths[name], 0) + p.numel()
        for name, macs in macs_by_module(supernet, input_shape).items():
            key = paths[f"{name}.weight"]  # every Conv2d and Linear has a weight
            self.macs[key] = self.macs.get(key, 0) + macs

    def __call__(self, arch: Architecture) -> tuple[int, int]:
        used = self._paths_used(arch)
        return (
            sum(v for k, v in self.params.items() if k in used),
            sum(v for k, v in self.macs.items() if k in used),
        )


def clear_size_cache() -> None:
    """Forget every cached child size."""
    _cache.clear()
