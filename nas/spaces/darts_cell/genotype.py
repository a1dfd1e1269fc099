"""DARTS genotype strings of darts_cell architectures (Liu et al., "DARTS", ICLR 2019).

DARTS writes a derived cell pair as

    Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ...], normal_concat=range(2, 6),
             reduce=[...], reduce_concat=range(2, 6))

with two (op, input index) pairs per intermediate node, in node order; input index 0 is c_{k-2}
(our "in1"), 1 is c_{k-1} (our "in0") and 2 + j the intermediate node j. `to_genotype` writes that
text (the DARTS code can `eval` it); `from_genotype` reads it back with a small strict parser (an
`ast` walk, nothing is evaluated). A node may take the same input twice with different ops: that is
one edge with two ops. Within a node `to_genotype` orders the pairs by input index, then by the
space's op order (DARTS orders them by strength, which an architecture does not keep), so a string
round-trips exactly up to the order of the two pairs of a node.

The op names are DARTS's modules. A space of DARTS's search network (`network="darts"`, as
`search_space=darts_cell`) searched exactly those: `DartsEvalNetwork` retrains the same ops
(tests/test_darts_search_network.py). In a space of the BayesNAS network (`network="bayesnas"`)
dil3x3 / dil5x5 are full convolutions and a reduction cell's ops follow a strided 1x1, so its
genotype names DARTS's depthwise, stride-2 ops rather than the ones searched.
"""

from __future__ import annotations

import ast

from nas.errors import NasError, check
from nas.spaces.base import Architecture, SearchSpace
from nas.spaces.darts_cell.dag import CELLS, INPUTS, NAME, parse_edge

# DARTS op name -> ours.
DARTS_OPS = {
    "sep_conv_3x3": "sep3x3",
    "sep_conv_5x5": "sep5x5",
    "dil_conv_3x3": "dil3x3",
    "dil_conv_5x5": "dil5x5",
    "max_pool_3x3": "maxpool3x3",
    "avg_pool_3x3": "avgpool3x3",
    "skip_connect": "identity",
}
OUR_OPS = {ours: darts for darts, ours in DARTS_OPS.items()}
PAIRS_PER_NODE = 2

# DARTS's published second-order cells (genotypes.py: DARTS_V2), concat written as range(2, 6).
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)

FORMAT = (
    "expected DARTS's format: Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ...], "
    "normal_concat=range(2, 6), reduce=[...], reduce_concat=range(2, 6)), two (op, input index) "
    "pairs per intermediate node in node order; input 0 = c_{k-2}, 1 = c_{k-1}, 2 + j = node j"
)


def _source(index: int) -> str:
    """Our node name of DARTS input index `index`."""
    return INPUTS[1 - index] if index < len(INPUTS) else str(index - len(INPUTS))


def _index(source: str) -> int:
    """DARTS's input index of our node `source`."""
    return 1 - INPUTS.index(source) if source in INPUTS else len(INPUTS) + int(source)


def to_genotype(arch: Architecture) -> str:
    """The DARTS genotype text of `arch`: every intermediate node must hold exactly two (op, input)
    pairs, counted over the ops on its incoming edges."""
    space = arch.space
    check(
        getattr(space, "name", None) == NAME,
        f"to_genotype needs an architecture of the darts_cell space, got {space.name!r}",
    )
    parts = []
    for cell in CELLS:
        pairs: list[tuple[str, int]] = []
        wrong = []
        for j in range(space.num_nodes):
            node = [
                (op, _index(parse_edge(e)[0]))
                for e in space.edges[cell]
                if parse_edge(e)[1] == j
                for op in arch[f"{cell}/{e}"]
            ]
            if len(node) != PAIRS_PER_NODE:
                wrong.append(f"node {j}: {[f'{op}<-{_source(i)}' for op, i in node]}")
            node.sort(key=lambda p: (p[1], space.ops.index(p[0])))
            pairs += node
        check(
            not wrong,
            f"to_genotype: the architecture is not a DARTS genotype: every intermediate node must "
            f"have exactly {PAIRS_PER_NODE} (op, input) pairs over its incoming edges, but "
            f"{cell} cell " + "; ".join(wrong),
        )
        concat = f"range({len(INPUTS)}, {len(INPUTS) + space.num_nodes})"
        listed = ", ".join(f"({OUR_OPS[op]!r}, {i})" for op, i in pairs)
        parts.append(f"{cell}=[{listed}], {cell}_concat={concat}")
    return f"Genotype({', '.join(parts)})"


def _fail(message: str) -> NasError:
    return NasError(f"genotype: {message}; {FORMAT}")


def _int(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _concat(node: ast.AST, key: str) -> list[int]:
    """The node indices of `range(a, b)` or a list / tuple of ints."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and not node.keywords
        and len(node.args) == 2
        and all(_int(a) is not None for a in node.args)
    ):
        return list(range(_int(node.args[0]), _int(node.args[1])))
    if isinstance(node, ast.List | ast.Tuple) and all(_int(e) is not None for e in node.elts):
        return [_int(e) for e in node.elts]
    raise _fail(f"{key}={ast.unparse(node)} must be range(a, b) or a list of ints")


def _pairs(node: ast.AST, key: str) -> list[tuple[str, int]]:
    """The (op, index) pairs of a list (or tuple) of 2-tuples."""
    if not isinstance(node, ast.List | ast.Tuple):
        raise _fail(f"{key}={ast.unparse(node)} must be a list of (op, input index) pairs")
    pairs = []
    for k, elt in enumerate(node.elts):
        ok = (
            isinstance(elt, ast.Tuple)
            and len(elt.elts) == 2
            and isinstance(elt.elts[0], ast.Constant)
            and isinstance(elt.elts[0].value, str)
            and _int(elt.elts[1]) is not None
        )
        if not ok:
            raise _fail(
                f"{key} item {k} is {ast.unparse(elt)}; each item must be an (op name, input "
                f"index) pair like ('sep_conv_3x3', 0)"
            )
        pairs.append((elt.elts[0].value, _int(elt.elts[1])))
    return pairs


def parse_genotype(text: str) -> dict[str, list]:
    """{"normal": pairs, "normal_concat": ints, "reduce": pairs, "reduce_concat": ints} of a DARTS
    genotype text, parsed (not evaluated) and checked for form only."""
    if not isinstance(text, str):
        raise _fail(f"got {type(text).__name__} {text!r}, not a string")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise _fail(f"{text[:80]!r} is not valid syntax ({err.msg})") from None
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name)):
        raise _fail(f"{text[:80]!r} is not a call Genotype(...)")
    if tree.func.id != "Genotype" or tree.args:
        raise _fail(
            f"got {tree.func.id}(...) with {len(tree.args)} positional argument(s); expected "
            f"Genotype(...) with keyword arguments only"
        )
    keys = [kw.arg for kw in tree.keywords]
    wanted = [f"{cell}{suffix}" for cell in CELLS for suffix in ("", "_concat")]
    if sorted(map(str, keys)) != sorted(wanted):
        raise _fail(f"keyword arguments are {keys}; expected exactly {wanted}")
    out: dict[str, list] = {}
    for kw in tree.keywords:
        out[kw.arg] = (_concat if kw.arg.endswith("_concat") else _pairs)(kw.value, kw.arg)
    return out


def from_genotype(text: str, space: SearchSpace) -> Architecture:
    """The architecture of `space` of a DARTS genotype text (see `to_genotype`)."""
    check(
        getattr(space, "name", None) == NAME,
        f"from_genotype needs a darts_cell space, got {getattr(space, 'name', space)!r}",
    )
    parsed = parse_genotype(text)
    nodes = space.num_nodes
    choices: dict[str, list[str]] = {f"{c}/{e}": [] for c in CELLS for e in space.edges[c]}
    for cell in CELLS:
        concat = parsed[f"{cell}_concat"]
        expected = list(range(len(INPUTS), len(INPUTS) + nodes))
        if concat != expected:
            raise _fail(
                f"{cell}_concat={concat}; the space's cells concatenate all {nodes} intermediate "
                f"nodes: range({expected[0]}, {expected[-1] + 1})"
            )
        pairs = parsed[cell]
        if len(pairs) != PAIRS_PER_NODE * nodes:
            raise _fail(
                f"{cell} has {len(pairs)} pairs; the space has {nodes} intermediate nodes, so "
                f"{PAIRS_PER_NODE * nodes} pairs ({PAIRS_PER_NODE} per node)"
            )
        for k, (name, index) in enumerate(pairs):
            j = k // PAIRS_PER_NODE
            where = f"{cell} pair {k} ({name!r}, {index}) into node {j}"
            if name not in DARTS_OPS:
                raise _fail(f"{where}: unknown op {name!r}; known ops: {list(DARTS_OPS)}")
            op = DARTS_OPS[name]
            check(
                op in space.ops,
                f"genotype: {where}: op {name!r} ({op}) is not among the space's ops "
                f"{[OUR_OPS[o] for o in space.ops]}",
            )
            if not 0 <= index < len(INPUTS) + j:
                raise _fail(
                    f"{where}: input index {index} must be 0 (c_{{k-2}}), 1 (c_{{k-1}}) or an "
                    f"earlier node 2..{len(INPUTS) + j - 1}"
                    if j
                    else f"{where}: input index {index} must be 0 (c_{{k-2}}) or 1 (c_{{k-1}})"
                )
            edge = f"{j}<-{_source(index)}"
            check(
                f"{cell}/{edge}" in choices,
                f"genotype: {where}: edge {edge!r} is not in the space's {cell} cell; its edges: "
                f"{list(space.edges[cell])}",
            )
            check(
                op not in choices[f"{cell}/{edge}"],
                f"genotype: {where}: node {j} lists ({name!r}, {index}) twice; an edge holds each "
                f"op once",
            )
            choices[f"{cell}/{edge}"].append(op)
    return space.architecture(choices)
