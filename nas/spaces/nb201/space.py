"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020): one op on each of the 6 edges of a 4-node cell.

Node j (1..3) sums one op applied to every earlier node i; the edge from i to j is the decision
"{j}<-{i}", as the benchmark names it. With the benchmark's 5 ops there are 5^6 = 15625 cells; every
cell of a network shares the one architecture. Architectures read and print as the benchmark's
strings: node 1's inputs, then node 2's, then node 3's, each input as `op~i`.

`cell_bn_affine=False` builds the supernet's searched cells with batch norm that learns no scale and
shift, as the benchmark's own search runs (AutoDL-Projects `exps/NAS-Bench-201-algos/GDAS.py` and
`DARTS-V1.py` build their search networks with `affine=False`); stem, reduction blocks and final BN
keep theirs. Stand-alone children are the benchmark's networks either way. The architectures, and so
the fingerprint, do not depend on it; `spec()` names it only when False, so every spec, checkpoint
and results store written before the option existed reads as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.errors import check
from nas.spaces.base import Architecture, Decision, SearchSpace

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NODES = 4  # node 0 is the cell's input, node 3 its output
EDGES = tuple(f"{j}<-{i}" for j in range(1, NODES) for i in range(j))
EXAMPLE = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"


class NB201Space(SearchSpace):
    """Decisions "1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2": exactly one of `ops` each."""

    name = "nb201"

    def __init__(self, ops: Sequence[str] = NB201_OPS, cell_bn_affine: bool = True):
        check(
            isinstance(cell_bn_affine, bool),
            f"search_space.cell_bn_affine={cell_bn_affine!r} must be true or false (the benchmark's "
            "search runs: false, BN without learned scale and shift in the searched cells)",
        )
        check(
            not isinstance(ops, str) and isinstance(ops, Sequence),
            f"search_space.ops={ops!r} must be a list of op names, e.g. {list(NB201_OPS)}",
        )
        ops = tuple(ops)
        unknown = [o for o in ops if o not in NB201_OPS]
        check(
            not unknown,
            f"search_space.ops has unknown op(s) {unknown}; NAS-Bench-201 ops: {list(NB201_OPS)}",
        )
        check(
            len(ops) >= 1 and len(set(ops)) == len(ops),
            f"search_space.ops={list(ops)} must list at least one op, each once, e.g. {list(NB201_OPS)}",
        )
        self.ops, self.cell_bn_affine = ops, cell_bn_affine
        super().__init__([Decision(edge, ops, min_k=1, max_k=1) for edge in EDGES])

    def spec(self) -> dict:
        affine = {} if self.cell_bn_affine else {"cell_bn_affine": False}
        return {"name": self.name, "ops": list(self.ops), **affine}

    def to_arch_string(self, arch: Architecture) -> str:
        """The benchmark's string of `arch`, e.g. `|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|...|`."""
        check(
            arch.space.fingerprint == self.fingerprint,
            f"architecture is from space {arch.space.name!r} with other decisions or ops, not from "
            f"this nb201 space (ops {list(self.ops)}); build it with this space",
        )
        several = [e for e in EDGES if len(arch[e]) != 1]
        check(
            not several,
            f"an NAS-Bench-201 string has one op per edge, but edge {several[0]!r} has "
            f"{list(arch[several[0]])}; the all-on architecture has no string"
            if several
            else "",
        )
        groups = (
            "|" + "|".join(f"{arch[f'{j}<-{i}'][0]}~{i}" for i in range(j)) + "|"
            for j in range(1, NODES)
        )
        return "+".join(groups)

    def from_arch_string(self, text: str) -> Architecture:
        """The architecture of a benchmark string such as `EXAMPLE`; a malformed one is refused."""
        check(
            isinstance(text, str),
            f"architecture string must be a str, got {type(text).__name__} {text!r}; {_expected()}",
        )
        groups = text.strip().split("+")
        check(
            len(groups) == NODES - 1,
            f"architecture string {text!r} has {len(groups)} node group(s) joined by '+'; "
            f"{_expected()}",
        )
        choices = {}
        for j, group in enumerate(groups, start=1):
            check(
                len(group) >= 2 and group[0] == group[-1] == "|",
                f"architecture string {text!r}: node {j}'s group {group!r} must start and end "
                f"with '|'; {_expected()}",
            )
            inputs: dict[int, str] = {}
            for item in group[1:-1].split("|"):
                op, sep, source = item.partition("~")
                check(
                    bool(sep)
                    and source.isascii()
                    and source.isdigit()
                    and int(source) < j
                    and int(source) not in inputs,
                    f"architecture string {text!r}: node {j} has entry {item!r}; expected 'op~i' "
                    f"once for each input node i in 0..{j - 1}; {_expected()}",
                )
                check(
                    op in self.ops,
                    f"architecture string {text!r}: unknown op {op!r} on edge {j}<-{source}; "
                    f"this space's ops: {list(self.ops)}",
                )
                inputs[int(source)] = op
            check(
                len(inputs) == j,
                f"architecture string {text!r}: node {j} lists inputs {sorted(inputs)}, expected "
                f"every node 0..{j - 1}; {_expected()}",
            )
            choices.update({f"{j}<-{i}": (op,) for i, op in inputs.items()})
        return Architecture(self, choices)


def _expected() -> str:
    return (
        f"expected {NODES - 1} groups joined by '+', group j listing 'op~i' between '|' for "
        f"every input node i < j, e.g. {EXAMPLE}"
    )
