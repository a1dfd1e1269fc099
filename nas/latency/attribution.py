"""Which modules of a stand-alone child carry each path's computation, for any space.

Two sources, neither needing code in the space:

- Declared paths. A supernet declares the module(s) of every switchable path while it is built
  (`SupernetBase.declare_path`), and a child is built by the same layer code, so the child's module
  of a path it holds has the same qualified name as the supernet's (checked for every image space).
- Options a space leaves undeclared (it declares only paths with parameters: pooling, identity and
  "none" have none). The modules of option o of decision d are those a child has when o is chosen
  and lacks when it is not: two children that differ in that one choice are built on the meta device
  (no weights, no arithmetic) and their module names compared.

A key is a path key of the supernet (`(decision, option)` or a derived path such as an adapter) or
`(decision, option)` for an undeclared option.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from nas.errors import NasError
from nas.spaces.base import Architecture, Decision, SearchSpace

PathKey = tuple


class OpModules:
    """The module names of every key, and the keys and modules an architecture's child uses."""

    def __init__(self, space: SearchSpace, network: Mapping, seed: int = 0):
        self.space, self.network = space, dict(network)
        with torch.device("meta"):
            supernet = space.build_supernet(**self.network)
        self.paths_used = supernet.paths_used
        self.names: dict[PathKey, set[str]] = _declared_names(supernet)
        self.declared = set(self.names)
        taken = set().union(*self.names.values()) if self.names else set()
        found = _undeclared_option_names(space, self.network, self.declared, taken, seed)
        self.names.update(found)
        self._key_of = {name: key for key, names in self.names.items() for name in names}

    def keys(self) -> list[PathKey]:
        """Every key with modules, declared paths first."""
        return list(self.names)

    def keys_used(self, arch: Architecture) -> set[PathKey]:
        """The keys whose modules the child of `arch` holds."""
        return used_keys(self.paths_used, arch, self.declared, set(self.names) - self.declared)

    def modules_of(self, child: nn.Module, arch: Architecture) -> dict[PathKey, list[nn.Module]]:
        """For every key `arch` uses, its modules in `child` (the child of `arch`)."""
        used = self.keys_used(arch)
        found: dict[PathKey, list[nn.Module]] = {}
        for name, module in child.named_modules():
            key = self._key_of.get(name)
            if key in used:
                found.setdefault(key, []).append(module)
        return found


def used_keys(
    paths_used, arch: Architecture, paths: Iterable[PathKey], options: Iterable[PathKey]
) -> set[PathKey]:
    """What `arch` uses of `paths` (declared: the supernet's `paths_used` says) and of `options`
    (undeclared `(decision, option)` keys: those it chooses)."""
    chosen = {(d.name, o) for d in arch.space.decisions for o in arch[d.name]}
    return (set(paths_used(arch)) & set(paths)) | (chosen & set(options))


def _declared_names(supernet: nn.Module) -> dict[PathKey, set[str]]:
    """Path key -> qualified names of its declared modules in `supernet`."""
    name_of = {id(m): n for n, m in supernet.named_modules()}
    if hasattr(supernet, "path_modules"):
        pairs = supernet.path_modules()
    else:  # a supernet of its own making: the modules whose parameters all lie on one path
        pairs = _modules_owning_parameters(supernet)
    names: dict[PathKey, set[str]] = {}
    for key, module in pairs:
        names.setdefault(tuple(key), set()).add(name_of[id(module)])
    return names


def _modules_owning_parameters(supernet: nn.Module) -> list[tuple[PathKey, nn.Module]]:
    paths = supernet.parameter_paths()
    pairs = []
    for name, module in supernet.named_modules():
        keys = {
            paths[f"{name}.{p}" if name else p] for p, _ in module.named_parameters(recurse=False)
        }
        if len(keys) == 1 and () not in keys:
            pairs.append((keys.pop(), module))
    return pairs


def _undeclared_option_names(
    space: SearchSpace, network: dict, declared: set, taken: set[str], seed: int
) -> dict[PathKey, set[str]]:
    """(decision, option) -> the modules a child has only when that option is chosen, for every
    option that is not a declared path. Modules in, or holding, a declared path's module are left
    to that path.

    The children compared are small: every other decision keeps the fewest options it allows
    (built fast, and what holds a decision's options, e.g. an edge, exists in both).
    """
    prefixes = {k[:2] for k in declared}  # (decision, option, ...) keys declare that option too
    # Pointer decisions choose where data comes from; modules of their own would hold parameters,
    # and every parameter lies on a declared path or in the trunk.
    todo = [
        (d, o)
        for d in space.decisions
        if not d.pointer
        for o in d.options
        if (d.name, o) not in prefixes
    ]
    if not todo:
        return {}
    base = _smallest_buildable(space, network, {(d.name, o) for d, o in todo}, random.Random(seed))
    if base is None:
        return {}
    holds_declared = {n.rsplit(".", i)[0] for n in taken for i in range(n.count(".") + 1)}
    names_of: dict[str, set[str]] = {}  # arch id -> module names (children repeat)

    def names(arch: Architecture) -> set[str]:
        if arch.id not in names_of:
            names_of[arch.id] = set(_module_names(space, arch, network))
        return names_of[arch.id]

    found: dict[PathKey, set[str]] = {}
    for d, option in todo:
        subsets = _with_and_without(d, base[d.name], option)
        if subsets is None:
            continue
        try:
            with_it, without = (
                names(space.architecture({**base.choices, d.name: s})) for s in subsets
            )
        except (
            NasError
        ):  # a combination the space refuses to build: the option stays in the fixed part
            continue
        own = {
            n
            for n in with_it - without
            if n not in holds_declared and not any(n.startswith(t + ".") for t in taken)
        }
        if own:
            found[d.name, option] = own
    return found


def _smallest_buildable(space: SearchSpace, network: dict, cheap: set, rng: random.Random):
    """Every decision at max(1, min_k) options, those in `cheap` (no parameters) first, or random
    architectures if the space refuses that one; None if none of them builds."""
    first = {
        d.name: sorted(d.options, key=lambda o: (d.name, o) not in cheap)[: max(1, d.min_k)]
        for d in space.decisions
    }
    candidates = [lambda: space.architecture(first)] + [lambda: space.sample(rng)] * 5
    for make in candidates:
        try:
            arch = make()
            _module_names(space, arch, network)
            return arch
        except NasError:
            continue
    return None


def _module_names(space: SearchSpace, arch: Architecture, network: dict) -> list[str]:
    with torch.device("meta"):
        return [name for name, _ in space.build_child(arch, **network).named_modules()]


def _with_and_without(d: Decision, current: tuple, option: str) -> tuple[tuple, tuple] | None:
    """Two choices of `d` near `current` that differ only in whether `option` is chosen, both
    holding some other option where the decision allows it; None for an option always chosen."""
    others = [o for o in d.options if o != option]
    if not others:
        return None
    rest = [o for o in current if o != option] or others[:1]
    rest = (rest + [o for o in others if o not in rest])[: max(1, d.min_k)]
    if len(rest) + 1 <= d.max_k:  # the same others, with and without the option
        return (*rest, option), tuple(rest)
    keep = rest[: max(0, d.min_k - 1)]  # room for one more only: the option replaces another
    return (*keep, option), (*keep, next(o for o in others if o not in keep))
