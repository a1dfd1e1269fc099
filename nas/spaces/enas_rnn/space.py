"""The ENAS recurrent cell search space (Pham et al., ICML 2018): one cell of N nodes, per time step.

Node 1 reads x_t and h_{t-1}; every later node l = 2..N reads one earlier node j (1..l-1). Every
node applies one activation of {tanh, ReLU, identity, sigmoid} inside a highway connection, and the
cell's output h_t is the average of its loose ends (the nodes no later node reads). Decisions, in the
order the authors' controller samples them: "node1/act", then per node l >= 2 "node{l}/input" (a
pointer decision over "node1".."node{l-1}") and "node{l}/act".

Size: 4 activations for each of the N nodes and l - 1 inputs for node l, so
    count = 4^N · Π_{l=2}^{N} (l - 1) = 4^N · (N - 1)!,
about 6.7 x 10^14 for N = 12 (the paper quotes "about 10^15").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from nas.errors import check
from nas.spaces.base import Architecture, Decision, Node, SearchSpace

ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")


class EnasRnnSpace(SearchSpace):
    """Decisions "node1/act" and, for l = 2..nodes, "node{l}/input" and "node{l}/act"."""

    name = "enas_rnn"

    def __init__(self, nodes: int = 12, activations: Sequence[str] = ACTIVATIONS):
        check(
            isinstance(nodes, int) and not isinstance(nodes, bool) and nodes >= 1,
            f"search_space.nodes={nodes!r} must be an integer >= 1 (ENAS searches 12 nodes)",
        )
        check(
            not isinstance(activations, str) and isinstance(activations, Sequence),
            f"search_space.activations={activations!r} must be a list, e.g. {list(ACTIVATIONS)}",
        )
        activations = tuple(activations)
        unknown = [a for a in activations if a not in ACTIVATIONS]
        check(
            not unknown,
            f"search_space.activations has unknown name(s) {unknown}; known: {list(ACTIVATIONS)}",
        )
        check(
            len(activations) >= 1 and len(set(activations)) == len(activations),
            f"search_space.activations={list(activations)} must list at least one activation, "
            f"each once, e.g. {list(ACTIVATIONS)}",
        )
        self.num_nodes, self.activations = nodes, activations
        decisions = [Decision("node1/act", activations, 1, 1)]
        for node in range(2, nodes + 1):
            earlier = tuple(f"node{j}" for j in range(1, node))
            decisions.append(Decision(f"node{node}/input", earlier, 1, 1, pointer=True))
            decisions.append(Decision(f"node{node}/act", activations, 1, 1))
        super().__init__(decisions)

    def spec(self) -> dict:
        return {"name": self.name, "nodes": self.num_nodes, "activations": list(self.activations)}

    def nodes(self) -> tuple[Node, ...]:
        # A node's anchor is the controller's state when it chose the node's activation (enas_lm)
        return tuple(Node(f"node{n}", f"node{n}/act", "at") for n in range(1, self.num_nodes + 1))

    def size_formula(self) -> int:
        """4^N · (N - 1)! with 4 = the number of activations: what `count()` must equal."""
        return len(self.activations) ** self.num_nodes * math.factorial(self.num_nodes - 1)


def chosen_input(arch: Architecture, node: int) -> int:
    """The node (1..node-1) that `node` (>= 2) reads."""
    (name,) = arch[f"node{node}/input"]
    return int(name.removeprefix("node"))


def inputs_of(arch: Architecture, node: int) -> tuple[int, ...]:
    """Every node that `node` reads: one, or several for the all-on architecture."""
    return tuple(int(name.removeprefix("node")) for name in arch[f"node{node}/input"])


def loose_ends(arch: Architecture) -> tuple[int, ...]:
    """The nodes (1..N) that no later node reads: the cell's output averages them."""
    space = arch.space
    check(
        isinstance(space, EnasRnnSpace),
        f"loose_ends needs an architecture of the enas_rnn space, got {space.name!r}",
    )
    read = {j for n in range(2, space.num_nodes + 1) for j in inputs_of(arch, n)}
    return tuple(n for n in range(1, space.num_nodes + 1) if n not in read)
