"""The inside of a darts_cell cell, shared by both network styles: nodes summing their edges' ops.

Node j = Σ over its edges "j<-i" of Σ_k w[edge][k] · op_k(node i) (every op on in a child), zeros
of the cell's output shape when no op of its edges is on; the cell outputs the channel
concatenation of its intermediate nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from nas.routing import Ghost, PathWeights, masked_sum
from nas.spaces.darts_cell.dag import parse_edge


def run_nodes(
    cell: nn.Module,
    states: dict[str, torch.Tensor],
    zeros: Callable[[], torch.Tensor],
    ghost: Ghost,
    routed: Mapping[str, PathWeights] | None,
    dense: bool,
) -> torch.Tensor:
    """The cell's output from its preprocessed inputs `states` ("in0", "in1"); `zeros()`: a dead
    node. `cell` holds `kind`, `nodes`, `edges` (edge -> ModuleDict of ops) and `incoming`."""
    for j in range(cell.nodes):
        terms = []
        for edge in cell.incoming[j]:
            ops, h = cell.edges[edge], states[parse_edge(edge)[0]]
            weights = routed[f"{cell.kind}/{edge}"] if routed is not None else None
            if isinstance(weights, tuple):  # weights per cell: this cell's (`cells_per_decision`)
                weights = weights[cell.copy]
            term = masked_sum(
                tuple(ops),
                lambda name, inp, g, ops=ops: ops[name](inp, g),
                lambda name, h=h: h,
                weights,
                lambda name, ops=ops: getattr(ops[name], "cheap", False),  # identity, pools
                dense,
                ghost,
            )
            if term is not None:
                terms.append(term)
        states[str(j)] = sum(terms[1:], terms[0]) if terms else zeros()
    return torch.cat([states[str(j)] for j in range(cell.nodes)], dim=1)
