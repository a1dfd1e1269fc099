"""BayesNAS's switches: the scalars multiplying every path, as path weights of the supernet.

Every option of every decision has an op switch; a decision that may choose nothing (an edge:
`min_k = 0`) also has an edge switch, the parent of its op switches, so the path weight of op k on
edge e is s_e · s_k. A switch *group* is one (decision, option or None for the edge) key; its
switches are its copies, one per cell of the network holding the decision's paths
(`switch_form="per_cell"`, the authors' code: each cell has its own switches, grouped in the lasso),
or one shared by all those cells (`"tied"`).

Per cell, the copies reach the network as weights [copies, 1, k] (`SupernetBase.cells_per_decision`:
how many cells of a decision the network weighs one by one); a decision with one copy gets [1, k].
A network that weighs no cell apart (every space but darts_cell) gets one copy per decision either
way, so there the two forms are the same.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from nas.errors import check
from nas.samplers.base import Sampler
from nas.spaces import SearchSpace, Weights

SWITCH_FORMS = {
    "per_cell": "one switch per cell, the copies of a path grouped in the lasso (the authors' code)",
    "tied": "one switch per path shared by all cells of its type (runs written before the option)",
}


class Switches(nn.Module):
    """The switch vector of a space; `copies[decision]` switches per key of a decision (default 1).

    `keys[g]`: the (decision, option or None) of group g; `parents[g]`: its parent group or -1;
    `edge_index[decision]` / `op_index[decision]`: the group(s) of its edge / op switches;
    `groups[i]`, `copy_index[i]`: group and copy (cell of the decision's type) of switch i of `values`.
    """

    def __init__(self, space: SearchSpace, copies: Mapping[str, int] | None = None):
        super().__init__()
        self.space = space
        self.copies = {d.name: int((copies or {}).get(d.name, 1)) for d in space.decisions}
        check(
            all(c >= 1 for c in self.copies.values()),
            f"Switches: every decision needs at least one copy, got {self.copies}",
        )
        self.keys: list[tuple[str, str | None]] = []  # (decision, option); option None: edge
        self.parents: list[int] = []
        self.op_index: dict[str, list[int]] = {}
        self.edge_index: dict[str, int] = {}
        groups: list[int] = []
        copy_index: list[int] = []
        flat: dict[str, list[list[int]]] = {}  # decision -> [copy][column] -> switch; edge first

        def add(key: tuple[str, str | None], parent: int, count: int) -> list[int]:
            self.keys.append(key)
            self.parents.append(parent)
            start = len(groups)
            groups.extend([len(self.keys) - 1] * count)
            copy_index.extend(range(count))
            return list(range(start, start + count))

        for d in space.decisions:
            c = self.copies[d.name]
            edge = -1
            columns = []
            if d.min_k == 0:
                edge = self.edge_index[d.name] = len(self.keys)
                columns.append(add((d.name, None), -1, c))
            self.op_index[d.name] = list(range(len(self.keys), len(self.keys) + len(d.options)))
            columns += [add((d.name, o), edge, c) for o in d.options]
            flat[d.name] = [list(row) for row in zip(*columns, strict=True)]
        self.has_edge = {d.name: d.name in self.edge_index for d in space.decisions}
        # index tensors: buffers, so they move with the module; not state (they follow the space)
        self.register_buffer("groups", torch.tensor(groups, dtype=torch.long), persistent=False)
        self.register_buffer(
            "copy_index", torch.tensor(copy_index, dtype=torch.long), persistent=False
        )
        for i, d in enumerate(space.decisions):
            index = torch.tensor(flat[d.name], dtype=torch.long)
            self.register_buffer(f"_index{i}", index, persistent=False)
        self.values = nn.Parameter(torch.ones(len(groups)))

    def is_edge(self) -> torch.Tensor:
        """[groups] bool: which groups are edge switches."""
        return torch.tensor([option is None for _, option in self.keys])

    def weights(self, values: torch.Tensor | None = None) -> Weights:
        """Path weights per decision, s_edge · s_op (or s_op for decisions without edge): [1, k]
        for a decision with one copy, [copies, 1, k] (one row of weights per cell) otherwise."""
        s = self.values if values is None else values
        out = {}
        for i, d in enumerate(self.space.decisions):
            w = s[getattr(self, f"_index{i}")]  # [copies, edge? + k]
            if self.has_edge[d.name]:
                w = w[:, 1:] * w[:, :1]
            out[d.name] = w if len(w) == 1 else w.unsqueeze(1)
        return out


class SwitchSampler(Sampler):
    """The learned switches as the path weights of validation and test (every path, weighted)."""

    def __init__(self, switches: Switches | None = None):
        self.switches = switches  # set by the module once its supernet says how many copies

    def eval_weights(self, space: SearchSpace, ghosts: int, batch_idx: int) -> Weights:
        with torch.no_grad():
            return self.switches.weights()

    def spec(self) -> dict:
        return {"name": "bayesnas_switches"}
