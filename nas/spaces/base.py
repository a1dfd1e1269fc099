"""Generic search-space vocabulary: SearchSpace, Architecture and the registry of spaces by name.

A space is an ordered tuple of decisions (`nas.spaces.decisions`). An architecture chooses, for every
decision, a subset of its options. Path weights (`nas.spaces.masks`: one row per architecture or
ghost batch, one column per option) are the only thing the network sees of an architecture.

Each space package (`nas/spaces/<name>/`) calls `register_space` with its space class and the two
networks built from it, so `build_space(spec)` and `space.build_supernet()` work by name. The names
of `decisions` and `masks` are importable from here too.
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

from nas.errors import NasError, check

# Re-exported: the vocabulary is imported from here (`from nas.spaces.base import Decision, Masks`).
from nas.spaces.decisions import NODE_TIMES, Decision, Node  # noqa: F401
from nas.spaces.masks import Masks, PathWeightCodec, Weights  # noqa: F401

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


class SearchSpace(PathWeightCodec):
    """An ordered tuple of decisions; subclasses add how to build their networks (path weights of
    its architectures: `PathWeightCodec`)."""

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
