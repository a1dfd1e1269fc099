"""Generic search-space vocabulary: Decision, SearchSpace, Architecture, path weights, the registry.

A space is an ordered tuple of decisions. An architecture chooses, for every decision, a subset of its
options. Path weights (one row per architecture or ghost batch, one column per option: 0/1 masks, or
real values that carry gradients) are the only thing the network sees of an architecture.

Each space package (`nas/spaces/<name>/`) calls `register_space` with its space class and the two
networks built from it, so `build_space(spec)` and `space.build_supernet()` work by name.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nas.errors import NasError, check

Weights = dict[str, torch.Tensor]  # decision name -> float tensor [rows, len(options)]
Masks = Weights  # path weights that are all 0 or 1

SPACES: dict[str, type[SearchSpace]] = {}  # name -> space class, filled by `register_space`
_NETWORKS: dict[str, tuple[Callable, Callable]] = {}  # name -> (supernet class, child class)


def register_space(space_class: type[SearchSpace], supernet: Callable, child: Callable) -> None:
    """Make `space_class` buildable by name, with `supernet(space, **net)` and `child(arch, **net)`."""
    SPACES[space_class.name] = space_class
    _NETWORKS[space_class.name] = (supernet, child)


def build_space(spec: SearchSpace | Mapping) -> SearchSpace:
    """A space from a `SearchSpace.spec()` dict (or the space itself); a spec with `module` (a
    space defined outside nas/spaces) imports that module first, which registers the space."""
    if isinstance(spec, SearchSpace):
        return spec
    spec = dict(spec)
    name, module = spec.pop("name", None), spec.pop("module", None)
    if name not in SPACES and module:  # a space defined outside nas/spaces names its module
        importlib.import_module(module)
    check(name in SPACES, f"unknown search space {name!r}; known spaces: {sorted(SPACES)}")
    return SPACES[name](**spec)


@dataclass(frozen=True)
class Decision:
    """One place where the space chooses `min_k..max_k` of `options` (order of options is fixed)."""

    name: str
    options: tuple[str, ...]
    min_k: int = 1
    max_k: int | None = None  # None: up to every option
    pointer: bool = False  # options name earlier nodes of the space (`SearchSpace.nodes`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        if self.max_k is None:
            object.__setattr__(self, "max_k", len(self.options))
        check(
            len(set(self.options)) == len(self.options),
            f"decision {self.name!r} repeats an option: {self.options}",
        )
        check(
            0 <= self.min_k <= self.max_k <= len(self.options) and self.max_k >= 1,
            f"decision {self.name!r}: need 0 <= min_k <= max_k <= {len(self.options)} options, "
            f"got min_k={self.min_k}, max_k={self.max_k}",
        )

    @property
    def fan_in(self) -> int:
        """Number of paths into this node (the k of path dropout's r^(1/k))."""
        return len(self.options)

    def count(self) -> int:
        """Number of valid subsets."""
        n = len(self.options)
        return sum(math.comb(n, k) for k in range(self.min_k, self.max_k + 1))

    def subsets(self) -> Iterator[tuple[str, ...]]:
        """Every valid subset, each in option order."""
        for k in range(self.min_k, self.max_k + 1):
            yield from itertools.combinations(self.options, k)

    def sample(self, rng: random.Random) -> tuple[str, ...]:
        """A subset drawn uniformly from all valid subsets (size k is drawn with weight C(n, k))."""
        n = len(self.options)
        sizes = list(range(self.min_k, self.max_k + 1))
        k = rng.choices(sizes, weights=[math.comb(n, s) for s in sizes])[0]
        return self.canonical(rng.sample(self.options, k))

    def canonical(self, chosen: Iterable[str]) -> tuple[str, ...]:
        """Validate `chosen` and return it in option order."""
        chosen = tuple(chosen)
        unknown = [c for c in chosen if c not in self.options]
        check(
            not unknown,
            f"decision {self.name!r}: unknown option(s) {unknown}; allowed: {list(self.options)}",
        )
        check(
            len(set(chosen)) == len(chosen),
            f"decision {self.name!r}: option chosen twice in {list(chosen)}",
        )
        check(
            self.min_k <= len(chosen) <= self.max_k,
            f"decision {self.name!r}: chose {len(chosen)} option(s) {list(chosen)}, "
            f"expected {self.min_k} to {self.max_k} of {list(self.options)}",
        )
        return tuple(o for o in self.options if o in chosen)


NODE_TIMES = ("before", "at", "after")


@dataclass(frozen=True)
class Node:
    """A node of the space's graph that pointer decisions choose among (the ENAS controller's anchors).

    The node exists relative to decision `at`: `before` it is decided (an input of a cell), `at` it
    (made by that decision, e.g. a layer by choosing its skips) or `after` it (complete once it is
    decided, e.g. a cell node after its last op).
    """

    name: str
    at: str
    when: str = "after"

    def __post_init__(self) -> None:
        check(
            self.when in NODE_TIMES,
            f"node {self.name!r}: when={self.when!r} must be one of {list(NODE_TIMES)}",
        )


@dataclass(frozen=True, eq=False)
class Architecture:
    """A frozen, hashable choice of options for every decision of `space`, validated on construction."""

    space: SearchSpace = field(repr=False)
    choices: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        given = dict(self.choices)
        names = [d.name for d in self.space.decisions]
        missing = [n for n in names if n not in given]
        extra = [n for n in given if n not in names]
        check(
            not extra,
            f"architecture names decision(s) {extra} that space {self.space.name!r} does not have; its decisions: {names}",
        )
        check(not missing, f"architecture lacks decision(s) {missing} of space {self.space.name!r}")
        canon = {d.name: d.canonical(given[d.name]) for d in self.space.decisions}
        object.__setattr__(self, "choices", canon)

    def __getitem__(self, decision: str) -> tuple[str, ...]:
        return self.choices[decision]

    def _key(self) -> tuple:
        return (self.space.fingerprint, tuple(self.choices[d.name] for d in self.space.decisions))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Architecture) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def id(self) -> str:
        """Short stable identifier (first 10 hex digits of a SHA-1 of the canonical JSON)."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:10]

    def to_dict(self) -> dict:
        """Plain JSON-able form: the space's name and fingerprint, and the choices."""
        data = {
            "space": self.space.name,
            "fingerprint": self.space.fingerprint,
            "space_spec": self.space.spec(),
            "choices": {d.name: list(self.choices[d.name]) for d in self.space.decisions},
        }
        if isinstance(self, _AllOn):
            data["all_on"] = True
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | Mapping, space: SearchSpace) -> Architecture:
        """Parse JSON text (or its dict) produced by `to_json`, checking it belongs to `space`."""
        if isinstance(text, str):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise NasError(
                    f'architecture JSON is malformed ({err}); expected an object like {{"space": ..., "choices": {{...}}}}'
                ) from None
        else:
            data = dict(text)
        check(
            isinstance(data, dict) and isinstance(data.get("choices"), dict),
            f"architecture JSON must be an object with a 'choices' mapping, got: {str(data)[:200]}",
        )
        if "space" in data:
            check(
                data["space"] == space.name,
                f"architecture is from space {data['space']!r}, but the model's space is {space.name!r}",
            )
        if "fingerprint" in data:
            check(
                data["fingerprint"] == space.fingerprint,
                f"architecture is from another configuration of space {space.name!r} "
                f"(fingerprint {data['fingerprint']} != {space.fingerprint}); its decisions or options differ",
            )
        if data.get("all_on"):
            return space.all_on()
        choices = data["choices"]
        for name, value in choices.items():
            check(
                isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
                f"architecture decision {name!r} must list option names, got {value!r}",
            )
        return cls(space, {k: tuple(v) for k, v in choices.items()})

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace | None = None) -> Architecture:
        """Read an architecture JSON file; without `space`, rebuild it from the file's `space_spec`."""
        path = Path(path)
        check(
            path.is_file(),
            f"architecture file {str(path)!r} does not exist; pass arch=<path to a .json written by search.py>",
        )
        text = path.read_text()
        if space is None:
            space = _space_of(text, path)
        try:
            return cls.from_json(text, space)
        except NasError as err:
            raise NasError(f"{path}: {err}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


class SearchSpace:
    """An ordered tuple of decisions; subclasses add how to build their networks."""

    name: str = "space"

    def __init__(self, decisions: Sequence[Decision]):
        self.decisions: tuple[Decision, ...] = tuple(decisions)
        names = [d.name for d in self.decisions]
        check(
            len(set(names)) == len(names),
            f"search space {self.name!r} repeats a decision name: {names}",
        )
        self._by_name = {d.name: d for d in self.decisions}

    # -- identity ---------------------------------------------------------------------------
    def spec(self) -> dict:
        """Plain-value constructor arguments (saved in checkpoints; `build_space(spec)` rebuilds)."""
        return {"name": self.name}

    @property
    def fingerprint(self) -> str:
        """Hash of the decisions and options: two spaces agree on architectures iff fingerprints match."""
        text = json.dumps([(d.name, d.options, d.min_k, d.max_k) for d in self.decisions])
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def decision(self, name: str) -> Decision:
        return self._by_name[name]

    def nodes(self) -> tuple[Node, ...]:
        """The nodes pointer decisions refer to, in the order they come into being (none by default).

        Every option of a `pointer` decision names a node that exists before that decision is made.
        """
        return ()

    def simplify(self, arch: Architecture) -> Architecture:
        """The equivalent architecture without dead parts (e.g. edges out of nodes with no input);
        identity by default."""
        return arch

    def derive(self, strengths: Mapping[str, Sequence[float]]) -> Architecture:
        """The discrete architecture of continuous option strengths (e.g. softmax(alpha) of DARTS):
        per decision, its max(1, min_k) strongest options. Spaces with a rule of their own (DARTS
        cells: two inputs per node) override it."""
        choices = {}
        for d in self.decisions:
            row = list(strengths[d.name])
            check(
                len(row) == len(d.options),
                f"derive: {len(row)} strengths for decision {d.name!r}, expected {len(d.options)}",
            )
            order = sorted(range(len(row)), key=lambda j: -row[j])
            choices[d.name] = [d.options[j] for j in order[: max(1, d.min_k)]]
        return self.simplify(self.architecture(choices))

    # -- counting and sampling ----------------------------------------------------------------
    def count(self) -> int:
        """Number of architectures in the space."""
        return math.prod(d.count() for d in self.decisions)

    def sample(self, rng: random.Random) -> Architecture:
        """One architecture from the space's fixed distribution: uniform over valid subsets, per decision."""
        return Architecture(self, {d.name: d.sample(rng) for d in self.decisions})

    def mutate(self, arch: Architecture, rng: random.Random) -> Architecture:
        """Change one decision (drawn uniformly among those with >1 choice) to a different subset."""
        mutable = [d for d in self.decisions if d.count() > 1]
        check(bool(mutable), f"space {self.name!r} has a single architecture; nothing to mutate")
        d = rng.choice(mutable)
        new = arch[d.name]
        while new == arch[d.name]:
            new = d.sample(rng)
        return Architecture(self, {**arch.choices, d.name: new})

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Architecture]:
        """Every architecture, in a fixed order; refuses spaces larger than `limit`."""
        check(
            self.count() <= limit,
            f"space {self.name!r} has {self.count():,} architectures, more than limit={limit:,}; sample instead",
        )
        names = [d.name for d in self.decisions]
        for combo in itertools.product(*(list(d.subsets()) for d in self.decisions)):
            yield Architecture(self, dict(zip(names, combo, strict=True)))

    def all_on(self) -> Architecture:
        """Every path enabled (ignores max_k: the supernet's all-on reference)."""
        return _AllOn(self)

    def architecture(self, choices: Mapping[str, Iterable[str]]) -> Architecture:
        return Architecture(self, {k: tuple(v) for k, v in choices.items()})

    # -- networks (registered by the space's package) -------------------------------------------
    def build_supernet(self, **network_kwargs):
        """The over-parameterised network holding every path of this space."""
        return self._networks()[0](self, **network_kwargs)

    def build_child(self, arch: Architecture, **network_kwargs):
        """A stand-alone network holding only the chosen paths of `arch`."""
        return self._networks()[1](arch, **network_kwargs)

    def _networks(self) -> tuple[Callable, Callable]:
        check(
            self.name in _NETWORKS,
            f"space {self.name!r} has no registered networks; its package must call register_space",
        )
        return _NETWORKS[self.name]

    # -- path weights -----------------------------------------------------------------------
    def encode(self, archs: Sequence[Architecture]) -> Masks:
        """Masks with one row per architecture: masks[name][i, j] = 1 iff arch i chose option j."""
        masks = {}
        for d in self.decisions:
            rows = [[1.0 if o in a[d.name] else 0.0 for o in d.options] for a in archs]
            masks[d.name] = torch.tensor(rows, dtype=torch.float32).reshape(
                len(archs), len(d.options)
            )
        return masks

    def decode(self, masks: Mapping[str, torch.Tensor], row: int = 0) -> Architecture:
        """The architecture of one row of 0/1 masks (the inverse of `encode`)."""
        return self.architecture(
            {
                d.name: [
                    o for o, m in zip(d.options, masks[d.name][row].tolist(), strict=True) if m
                ]
                for d in self.decisions
            }
        )

    def full_masks(self, rows: int = 1) -> Masks:
        """All-ones masks (every path on) with `rows` rows."""
        return {d.name: torch.ones(rows, len(d.options)) for d in self.decisions}

    def check_weights(self, weights: Mapping[str, torch.Tensor], rows: int | None = None) -> None:
        """Raise a clear error unless `weights` has every decision with the right width (and rows)."""
        for d in self.decisions:
            check(
                d.name in weights,
                f"path weights lack decision {d.name!r}; expected keys {[x.name for x in self.decisions]}",
            )
            m = weights[d.name]
            check(
                isinstance(m, torch.Tensor) and m.dim() == 2 and m.shape[1] == len(d.options),
                f"path weights {d.name!r} have shape {tuple(getattr(m, 'shape', ()))}, "
                f"expected [rows, {len(d.options)}]",
            )
            if rows is not None:
                check(
                    m.shape[0] in (1, rows),
                    f"path weights {d.name!r} have {m.shape[0]} rows, expected 1 or {rows} (one per ghost batch)",
                )


def _space_of(text: str, path: Path) -> SearchSpace:
    """The space an architecture file names in its `space_spec`."""
    try:
        spec = json.loads(text).get("space_spec")
    except (json.JSONDecodeError, AttributeError):
        raise NasError(
            f"{path}: architecture JSON is malformed; expected an object written by search.py"
        ) from None
    check(
        isinstance(spec, dict),
        f"{path}: architecture JSON has no 'space_spec'; pass the search space explicitly",
    )
    return build_space(spec)


class _AllOn(Architecture):
    """The all-on architecture: every option of every decision, whatever max_k allows."""

    def __init__(self, space: SearchSpace):
        object.__setattr__(self, "space", space)
        object.__setattr__(self, "choices", {d.name: d.options for d in space.decisions})

    def __post_init__(self) -> None:  # not validated against max_k on purpose
        pass
