"""A DARTS-like cell space with a configurable DAG: any subset of the ops on every edge of two cells.

A cell (normal or reduction) has the inputs "in0" (the previous cell's output, h-1) and "in1" (the
one before, h-2) and intermediate nodes "0" .. "nodes-1". Its DAG is a list of edges "j<-i" from an
input or an earlier intermediate node i to the intermediate node j; node j sums, over its edges, the
chosen ops applied to node i, and the cell outputs the concatenation of its intermediate nodes.

Every edge of every cell type is one decision "{cell}/{edge}" choosing any subset of the ops, none
included: an edge with no op is absent (there is no "none" op). So BayesNAS's pruned cells (a few
ops per edge, some edges gone) and DARTS's derived cells (one op on two incoming edges per node) are
both architectures of the space, which has 2^(ops · edges) of them.

Presets: `DARTS_EDGES`, every earlier node into every intermediate node (Liu et al., ICLR 2019: 14
edges for 4 nodes), the default; `BAYESNAS_EDGES`, the 8-edge cells of the BayesNAS code
(`DartsCellSpace.bayesnas()`).

`network` picks the network built on the cells (`NETWORKS`): "darts", DARTS's search network
(ReLU-conv-BN ops with affine-free BN, depthwise dilated convs, stride-2 ops in reduction cells;
`darts_network.py`), or "bayesnas", the BayesNAS search network (BN-ReLU-conv ops, full dilated
convs, a strided 1x1 before reduction cells; `network.py`). The architectures, and so the
fingerprint, are the same for both. A spec without `network` (every darts_cell checkpoint, results
store and architecture file written before the option existed) means "bayesnas", so `spec()`
leaves the key out for it: those files still load, and their architecture ids are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nas.errors import check
from nas.spaces.base import Architecture, Decision, SearchSpace
from nas.spaces.darts_cell.dag import CELLS, INPUTS, NAME, parse_edge
from nas.spaces.darts_cell.genotype import from_genotype, to_genotype

BAYESNAS_OPS = ("sep3x3", "sep5x5", "dil3x3", "dil5x5", "maxpool3x3", "avgpool3x3", "identity")
NETWORKS = {
    "darts": "DARTS's search network (Liu et al., ICLR 2019; the DARTS and GDAS experiments)",
    "bayesnas": "the BayesNAS search network (Zhou et al., ICML 2019; search_space=bayesnas_cell)",
}
OLD_NETWORK = "bayesnas"  # the network of a spec that names none (written before the option)


def dense_edges(nodes: int) -> tuple[str, ...]:
    """Every earlier node into every intermediate node: in0, in1, 0 .. j-1 into j (DARTS)."""
    return tuple(f"{j}<-{i}" for j in range(nodes) for i in (*INPUTS, *map(str, range(j))))


DARTS_EDGES = dense_edges(4)  # 2 + 3 + 4 + 5 = 14 edges

# The cells of the BayesNAS code (search/OneShot.py; ALGORITHMS.md 3.2), two edges per node.
BAYESNAS_EDGES = {
    "normal": (
        "0<-in0",
        "0<-in1",
        "1<-in0",
        "1<-in1",
        "2<-in0",
        "2<-in1",
        # The code feeds node 3's edge `in1_3` with x_in0, so node 3 reads in0 and node 0. Its name
        # and the released final cells suggest "3<-in1" was meant (a suspected bug); kept as run.
        "3<-in0",
        "3<-0",
    ),
    "reduce": (
        "0<-in0",
        "0<-in1",
        "1<-in1",
        "1<-0",
        "2<-in1",
        "2<-0",
        "3<-in1",
        "3<-0",
    ),
}


def _source_rank(source: str) -> int:
    """Order of the nodes: in0, in1, 0, 1, ..."""
    return INPUTS.index(source) if source in INPUTS else len(INPUTS) + int(source)


def _check_edges(edges, nodes: int, key: str) -> tuple[str, ...]:
    """`edges` validated (known nodes, source before target, each once, every node fed), in the
    canonical order (by target, then source: in0, in1, 0, 1, ...)."""
    example = f"e.g. {list(DARTS_EDGES[:3])}"
    check(
        not isinstance(edges, str) and isinstance(edges, Sequence),
        f"search_space.{key}={edges!r} must be a list of edges 'j<-i' (i in0, in1 or an "
        f"intermediate node before j), {example}, or null for every edge",
    )
    edges = tuple(edges)
    targets = [str(j) for j in range(nodes)]
    sources = [*INPUTS, *targets]
    for edge in edges:
        ok = isinstance(edge, str) and edge.count("<-") == 1
        if ok:
            target, _, source = edge.partition("<-")
            ok = target in targets and source in sources
        check(
            ok,
            f"search_space.{key} has edge {edge!r}; expected 'j<-i' with j an intermediate node "
            f"0..{nodes - 1} and i one of in0, in1, 0..{nodes - 2} ({nodes} nodes), {example}",
        )
        source, j = parse_edge(edge)
        check(
            source in INPUTS or int(source) < j,
            f"search_space.{key} has edge {edge!r} from node {source} into node {j}; an edge "
            f"must come from an input (in0, in1)"
            + (f" or an earlier node (0..{j - 1})" if j else ""),
        )
    repeated = sorted({e for e in edges if edges.count(e) > 1})
    check(not repeated, f"search_space.{key} lists edge(s) {repeated} more than once")
    fed = {parse_edge(e)[1] for e in edges}
    unfed = [j for j in range(nodes) if j not in fed]
    check(
        not unfed,
        f"search_space.{key}={list(edges)} leaves node(s) {unfed} without an incoming edge; every "
        f"intermediate node 0..{nodes - 1} needs at least one",
    )
    return tuple(sorted(edges, key=lambda e: (parse_edge(e)[1], _source_rank(parse_edge(e)[0]))))


class DartsCellSpace(SearchSpace):
    """Decisions "{cell}/{edge}" for cell in normal, reduce and each edge of that cell's DAG: any
    subset of `ops` (none included: the edge is then absent)."""

    name = NAME

    def __init__(
        self,
        ops: Sequence[str] = BAYESNAS_OPS,
        edges: Sequence[str] | None = None,
        reduce_edges: Sequence[str] | None = None,
        nodes: int = 4,
        network: str = OLD_NETWORK,
    ):
        check(
            network in NETWORKS,
            f"search_space.network={network!r} is unknown; choose "
            + " or ".join(f"{k!r} ({v})" for k, v in NETWORKS.items()),
        )
        check(
            isinstance(nodes, int) and not isinstance(nodes, bool) and nodes >= 1,
            f"search_space.nodes={nodes!r} must be an integer >= 1: the intermediate nodes of a "
            f"cell (DARTS and BayesNAS use 4)",
        )
        check(
            not isinstance(ops, str) and isinstance(ops, Sequence),
            f"search_space.ops={ops!r} must be a list of op names, e.g. {list(BAYESNAS_OPS)}",
        )
        ops = tuple(ops)
        unknown = [o for o in ops if o not in BAYESNAS_OPS]
        check(
            not unknown,
            f"search_space.ops has unknown op(s) {unknown}; known ops: {list(BAYESNAS_OPS)} "
            f"(no 'none': an edge with no op chosen is absent)",
        )
        check(
            len(ops) >= 1 and len(set(ops)) == len(ops),
            f"search_space.ops={list(ops)} must list at least one op, each once, "
            f"e.g. {list(BAYESNAS_OPS)}",
        )
        self.num_nodes, self.ops, self.network = nodes, ops, network
        normal = dense_edges(nodes) if edges is None else _check_edges(edges, nodes, "edges")
        reduce = (
            normal if reduce_edges is None else _check_edges(reduce_edges, nodes, "reduce_edges")
        )
        self.edges = {"normal": normal, "reduce": reduce}
        super().__init__(
            [
                Decision(f"{cell}/{edge}", ops, min_k=0, max_k=len(ops))
                for cell in CELLS
                for edge in self.edges[cell]
            ]
        )

    @classmethod
    def bayesnas(cls, ops: Sequence[str] = BAYESNAS_OPS) -> DartsCellSpace:
        """The 8-edge cells of the BayesNAS code (`BAYESNAS_EDGES`), its network."""
        return cls(ops, BAYESNAS_EDGES["normal"], BAYESNAS_EDGES["reduce"], 4, "bayesnas")

    @classmethod
    def darts(
        cls, ops: Sequence[str] = BAYESNAS_OPS, nodes: int = 4, network: str = "darts"
    ) -> DartsCellSpace:
        """Every earlier node into every intermediate node (the DARTS DAG; the default edges) and
        DARTS's search network: `search_space=darts_cell`."""
        return cls(ops, None, None, nodes, network)

    def to_genotype(self, arch: Architecture) -> str:
        """DARTS's genotype text of `arch` (see `nas.spaces.darts_cell.genotype`)."""
        check(
            arch.space.fingerprint == self.fingerprint,
            "to_genotype: the architecture is not from this darts_cell space",
        )
        return to_genotype(arch)

    def from_genotype(self, text: str) -> Architecture:
        """The architecture of a DARTS genotype text (see `nas.spaces.darts_cell.genotype`)."""
        return from_genotype(text, self)

    def spec(self) -> dict:
        return {
            "name": self.name,
            "ops": list(self.ops),
            "edges": list(self.edges["normal"]),
            "reduce_edges": list(self.edges["reduce"]),
            "nodes": self.num_nodes,
            **({} if self.network == OLD_NETWORK else {"network": self.network}),
        }

    def derive(
        self, strengths: Mapping[str, Sequence[float]], inputs_per_node: int = 2
    ) -> Architecture:
        """DARTS's discretisation: on every edge its strongest op; into every node the
        `inputs_per_node` edges whose strongest op is strongest; the other edges absent."""
        choices: dict[str, tuple[str, ...]] = {}
        for cell in CELLS:
            best: dict[str, tuple[float, str]] = {}
            for edge in self.edges[cell]:
                row = list(strengths[f"{cell}/{edge}"])
                j = max(range(len(row)), key=lambda i: row[i])
                best[edge] = (row[j], self.ops[j])
            for edge in self.edges[cell]:
                target = parse_edge(edge)[1]
                rivals = sorted(
                    (e for e in self.edges[cell] if parse_edge(e)[1] == target),
                    key=lambda e: -best[e][0],
                )
                kept = edge in rivals[:inputs_per_node]
                choices[f"{cell}/{edge}"] = (best[edge][1],) if kept else ()
        return self.simplify(Architecture(self, choices))

    def simplify(self, arch: Architecture) -> Architecture:
        """`arch` without the ops on edges out of dead nodes, repeated until none is left.

        An intermediate node is dead when none of its incoming edges has an op: it is zeros. The ops
        on its outgoing edges then see only zeros (their output is a constant, BN's shift passed
        through), so they are dropped, which may leave their targets dead in turn. Inputs in0 and in1
        are never dead. Returns `arch` itself when nothing is dead.
        """
        check(
            arch.space.fingerprint == self.fingerprint,
            f"simplify: the architecture is from space {arch.space.name!r} with other decisions, "
            f"not from this darts_cell space",
        )
        choices = dict(arch.choices)
        for cell in CELLS:
            edges = self.edges[cell]
            changed = True
            while changed:
                live = {parse_edge(e)[1] for e in edges if choices[f"{cell}/{e}"]}
                changed = False
                for e in edges:
                    source = parse_edge(e)[0]
                    if source not in INPUTS and int(source) not in live and choices[f"{cell}/{e}"]:
                        choices[f"{cell}/{e}"] = ()
                        changed = True
        if choices == dict(arch.choices):
            return arch
        return Architecture(self, choices)
