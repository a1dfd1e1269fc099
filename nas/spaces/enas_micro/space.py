"""The ENAS micro search space (Pham et al., ICML 2018): a normal and a reduction cell of B nodes.

Nodes 0 and 1 of a cell are its inputs (the outputs of the two previous cells). Each later node n
picks two inputs among nodes 0..n-1 (with replacement: both may be the same node) and one op for
each, and adds the two results; the cell's output joins the nodes that no node takes as input (its
"loose ends"). Per node the decisions come in the order the authors' controller samples them:
"{cell}/node{n}/in_a", "in_b" (pointer decisions over the cell's nodes), "op_a", "op_b". With B = 7
and the five ops, ordered choices number Π_{n=2}^{6} (n² · 25) ≈ 5 x 10^12 per cell (the paper quotes
(5 x (B-2)!)² per cell, about 1.3 x 10^11 for both cells together; not the code's count).
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.errors import check
from nas.spaces.base import Architecture, Decision, Node, SearchSpace

MICRO_OPS = ("sep3x3", "sep5x5", "avgpool3x3", "maxpool3x3", "identity")  # the authors' ids 0..4
CELLS = ("normal", "reduce")
SLOTS = ("a", "b")


class EnasMicroSpace(SearchSpace):
    """Decisions "{cell}/node{n}/in_a", "in_b", "op_a", "op_b" for cell in normal, reduce and
    n = 2..nodes-1: exactly one option each. "in_*" options are "{cell}/0".."{cell}/{n-1}"."""

    name = "enas_micro"

    def __init__(self, nodes: int = 7, ops: Sequence[str] = MICRO_OPS):
        check(
            isinstance(nodes, int) and not isinstance(nodes, bool) and nodes >= 3,
            f"search_space.nodes={nodes!r} must be an integer >= 3: two cell inputs and at least "
            f"one searched node (ENAS uses 7)",
        )
        check(
            not isinstance(ops, str) and isinstance(ops, Sequence),
            f"search_space.ops={ops!r} must be a list of op names, e.g. {list(MICRO_OPS)}",
        )
        ops = tuple(ops)
        unknown = [o for o in ops if o not in MICRO_OPS]
        check(
            not unknown,
            f"search_space.ops has unknown op(s) {unknown}; ENAS micro ops: {list(MICRO_OPS)}",
        )
        check(
            len(ops) >= 1 and len(set(ops)) == len(ops),
            f"search_space.ops={list(ops)} must list at least one op, each once, e.g. {list(MICRO_OPS)}",
        )
        self.num_nodes, self.ops = nodes, ops
        decisions = []
        for cell in CELLS:
            for n in range(2, nodes):
                earlier = tuple(f"{cell}/{j}" for j in range(n))
                for s in SLOTS:
                    decisions.append(
                        Decision(f"{cell}/node{n}/in_{s}", earlier, 1, 1, pointer=True)
                    )
                for s in SLOTS:
                    decisions.append(Decision(f"{cell}/node{n}/op_{s}", ops, 1, 1))
        super().__init__(decisions)

    def spec(self) -> dict:
        return {"name": self.name, "nodes": self.num_nodes, "ops": list(self.ops)}

    def nodes(self) -> tuple[Node, ...]:
        out = []
        for cell in CELLS:
            first = f"{cell}/node2/in_a"
            out += [Node(f"{cell}/0", first, "before"), Node(f"{cell}/1", first, "before")]
            out += [
                Node(f"{cell}/{n}", f"{cell}/node{n}/op_b", "after")
                for n in range(2, self.num_nodes)
            ]
        return tuple(out)


def chosen_input(arch: Architecture, cell: str, n: int, slot: str) -> int:
    """The node (0..n-1) that node n of `cell` takes in `slot` ("a" or "b")."""
    (name,) = arch[f"{cell}/node{n}/in_{slot}"]
    return int(name.rsplit("/", 1)[1])


def loose_ends(arch: Architecture, cell: str) -> tuple[int, ...]:
    """The nodes of `cell` (inputs 0 and 1 included, as in the authors' code) that no node takes as
    an input: the cell's output concatenates them."""
    check(cell in CELLS, f"cell={cell!r} must be one of {list(CELLS)}")
    space = arch.space
    check(
        isinstance(space, EnasMicroSpace),
        f"loose_ends needs an architecture of the enas_micro space, got {space.name!r}",
    )
    used = {chosen_input(arch, cell, n, s) for n in range(2, space.num_nodes) for s in SLOTS}
    return tuple(k for k in range(space.num_nodes) if k not in used)


def parse_arc(space: EnasMicroSpace, arc: str | Sequence[int]) -> Architecture:
    """The architecture of an arc in the authors' format (`--child_fixed_arc`): the normal cell,
    then the reduction cell, each node n = 2.. as (input a, op a, input b, op b), op ids in the
    authors' order (MICRO_OPS, or its first ops)."""
    _check_authors_ops(space)
    if isinstance(arc, str):
        words = arc.replace(",", " ").split()
        check(
            all(w.lstrip("-").isdigit() for w in words),
            f"arc {arc[:80]!r} must be integers separated by spaces, as in the authors' scripts",
        )
        arc = [int(w) for w in words]
    ids = [int(v) for v in arc]
    per_cell = 4 * (space.num_nodes - 2)
    check(
        len(ids) == 2 * per_cell,
        f"arc has {len(ids)} numbers; cells of {space.num_nodes} nodes take {2 * per_cell} (per "
        f"cell and node: input, op, input, op); set search_space.nodes to len(arc) / 8 + 2",
    )
    choices, at = {}, 0
    for cell in CELLS:
        for n in range(2, space.num_nodes):
            for s in SLOTS:
                j, op = ids[at], ids[at + 1]
                check(
                    0 <= j < n,
                    f"arc: {cell} node {n} slot {s} reads node {j}; a node reads nodes 0..{n - 1}",
                )
                check(
                    0 <= op < len(space.ops),
                    f"arc: {cell} node {n} slot {s} has op id {op}, not one of "
                    f"0..{len(space.ops) - 1} ({list(space.ops)})",
                )
                choices[f"{cell}/node{n}/in_{s}"] = [f"{cell}/{j}"]
                choices[f"{cell}/node{n}/op_{s}"] = [space.ops[op]]
                at += 2
    return space.architecture(choices)


def format_arc(arch: Architecture) -> str:
    """`arch` in the authors' format (the inverse of `parse_arc`)."""
    space = arch.space
    _check_authors_ops(space)
    ids = []
    for cell in CELLS:
        for n in range(2, space.num_nodes):
            for s in SLOTS:
                ids += [
                    chosen_input(arch, cell, n, s),
                    space.ops.index(arch[f"{cell}/node{n}/op_{s}"][0]),
                ]
    return " ".join(map(str, ids))


def _check_authors_ops(space: SearchSpace) -> None:
    check(
        isinstance(space, EnasMicroSpace),
        f"an arc in the authors' micro format needs the enas_micro space, got {space.name!r}",
    )
    check(
        space.ops == MICRO_OPS[: len(space.ops)],
        f"an arc in the authors' format numbers the ops {list(MICRO_OPS)}; the space's ops "
        f"{list(space.ops)} are in another order: use the default search_space.ops",
    )
