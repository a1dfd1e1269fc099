"""ENAS recurrent networks: the supernet holding every (node, earlier node) edge, and children.

A language model: embedding (its matrix is also the softmax's, weight tying) -> the searched cell
run over time -> linear decoder. Per time step t, with x_t the embedded token and h_{t-1} the last
output (both under their variational dropout masks where they enter a matrix product):
    node 1:  [a, g] = W_x x_t + W_h h_{t-1},   s_1 = σ(g) ⊙ f_1(a) + (1 - σ(g)) ⊙ h_{t-1}
    node l:  [a, g] = W_{l,j} s_j,              s_l = σ(g) ⊙ f_l(a) + (1 - σ(g)) ⊙ s_j
(highway connections; j the node l reads, f_l its activation), and h_t = the mean of the loose
ends, scaled down to norm `max_hidden_norm` where it is longer (ENAS-PyTorch: 25). Each edge
(l, j) has its own W_{l,j} [hidden -> 2·hidden], shared by the four activations; it is the path
("node{l}/input", "node{j}"). Activations hold no weights. No biases (enas_lm). The model both
networks run is `layers.RnnLayers`; they differ in which edges exist and in their `_plan`.

Path weights, one row per ghost batch (here: a group of sequences): node l computes
Σ_{j,a} w_in[j] · w_act[a] · s_l(j, a), node 1 Σ_a w_act[a] · s_1(a), and the output
Σ_k L_k s_k / Σ_k L_k with L_k = Π_{l>k} (1 - w_in_l[k]), which is 1 exactly on the loose ends of
0/1 weights. An edge runs only on the sequences of the ghost batches that use it (gathered), or on
all of them (dense); both give the same result. Shapes: tokens [N, T] (int64); logits [N, T, V];
hidden [N, hidden].
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nas.errors import check
from nas.ghost_bn import ghost_sizes
from nas.spaces.base import Architecture
from nas.spaces.enas_rnn.layers import Plan, RnnLayers, edge_key, refuse_image_settings, rnn_config
from nas.spaces.enas_rnn.space import EnasRnnSpace, inputs_of, loose_ends
from nas.spaces.interface import ChildBase, SupernetBase


class EnasRnnSupernet(SupernetBase, RnnLayers):
    """Every edge (l, j); paths ("node{l}/input", "node{j}"). Trunk: embedding, node 1, bias."""

    def __init__(
        self,
        space: EnasRnnSpace,
        num_classes: int = 10000,
        hidden: int = 1000,
        dropout: float = 0.0,
        dropout_hidden: float = 0.0,
        dropout_input: float = 0.0,
        dropout_embed: float = 0.0,
        in_channels: int = 1,
        max_hidden_norm: float | None = 25.0,
        **image_network,
    ):
        refuse_image_settings(image_network)
        check(
            isinstance(space, EnasRnnSpace),
            f"EnasRnnSupernet needs the enas_rnn space, got {getattr(space, 'name', space)!r}",
        )
        config = rnn_config(
            num_classes,
            hidden,
            dropout,
            dropout_hidden,
            dropout_input,
            dropout_embed,
            in_channels,
            max_hidden_norm,
        )
        super().__init__(space, config)
        nodes = space.num_nodes
        self._build_layers(((n, j) for n in range(2, nodes + 1) for j in range(1, n)), config)
        for n in range(2, nodes + 1):
            for j in range(1, n):
                self.declare_path((f"node{n}/input", f"node{j}"), self.edges[edge_key(n, j)])

    def forward(self, x, weights=None, ghost=None, dense: bool = False) -> torch.Tensor:
        """Logits [N, T, V] of token ids x [N, T] from a zero state (see `run`)."""
        return self.run(x, None, weights, ghost, dense)[0]

    def _plan(self, n: int, weights, ghost, dense: bool, device) -> tuple:
        """Node 1's activation terms, every later node's edges and terms, and the loose ends,
        with per-sequence weights [n, 1] (ghost batch rows repeated over their sequences)."""
        space = self.space
        if weights is None:
            weights = space.full_masks(1)
        sizes = ghost_sizes(n, ghost)
        space.check_weights(weights, len(sizes))
        repeats = torch.tensor(sizes, device=device)
        rows = {}
        for d in space.decisions:
            w = weights[d.name].to(device)
            rows[d.name] = w.expand(len(sizes), -1).repeat_interleave(repeats, 0)  # [n, k]
        on = {name: (w.detach() != 0).cpu() for name, w in rows.items()}

        def terms(decision: str, scale: torch.Tensor, use: torch.Tensor, index) -> list:
            """(activation, weight [n or gathered, 1]) of the activations some `use` row takes."""
            out = []
            for i, act in enumerate(space.activations):
                if bool((use & on[decision][:, i]).any()):
                    w = rows[decision][:, i] * scale
                    out.append((act, (w if index is None else w.index_select(0, index))[:, None]))
            return out

        every = torch.ones(n, dtype=torch.bool)
        acts = terms("node1/act", rows["node1/act"].new_ones(n), every, None)
        plan: Plan = []
        ones = rows["node1/act"].new_ones(n)
        loose = {k: ones for k in range(1, space.num_nodes + 1)}  # L_k, one value per sequence
        for node in range(2, space.num_nodes + 1):
            name, edges = f"node{node}/input", []
            for j in range(1, node):
                use = on[name][:, j - 1]
                loose[j] = loose[j] * (1 - rows[name][:, j - 1])
                if not bool(use.any()):
                    continue
                index = None
                if not dense and not bool(use.all()):
                    index = use.nonzero().squeeze(1).to(device)
                found = terms(f"node{node}/act", rows[name][:, j - 1], use, index)
                if found:
                    edges.append((j, index, found))
            plan.append(edges)
        ends = [(k, w[:, None]) for k, w in loose.items() if bool((w.detach() != 0).any())]
        return acts, plan, (ends, torch.stack(list(loose.values()), 1).sum(1, keepdim=True))


class EnasRnnChild(ChildBase, RnnLayers):
    """The language model of one architecture: only its chosen edges exist."""

    space_class = EnasRnnSpace

    def __init__(
        self,
        arch: Architecture,
        num_classes: int = 10000,
        hidden: int = 1000,
        dropout: float = 0.0,
        dropout_hidden: float = 0.0,
        dropout_input: float = 0.0,
        dropout_embed: float = 0.0,
        in_channels: int = 1,
        max_hidden_norm: float | None = 25.0,
        **image_network,
    ):
        refuse_image_settings(image_network)
        super().__init__(arch)
        self.config = rnn_config(
            num_classes,
            hidden,
            dropout,
            dropout_hidden,
            dropout_input,
            dropout_embed,
            in_channels,
            max_hidden_norm,
        )
        nodes = arch.space.num_nodes
        self._edges = {n: inputs_of(arch, n) for n in range(2, nodes + 1)}
        self._build_layers(((n, j) for n, js in self._edges.items() for j in js), self.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, T, V] of token ids x [N, T] from a zero state (see `run`)."""
        return self.run(x)[0]

    def _plan(self, n: int, weights, ghost, dense: bool, device) -> tuple:
        arch = self.arch
        acts = [(a, None) for a in arch["node1/act"]]
        plan: Plan = [
            [(j, None, [(a, None) for a in arch[f"node{node}/act"]]) for j in js]
            for node, js in self._edges.items()
        ]
        ends = loose_ends(arch)
        return acts, plan, ([(k, None) for k in ends], float(len(ends)))


def lm_size(arch: Architecture, config: Mapping) -> tuple[int, int]:
    """(parameters, multiply-accumulates per token) of the stand-alone network of `arch`."""
    vocab, hidden = config["num_classes"], config["hidden"]
    edges = sum(len(inputs_of(arch, n)) for n in range(2, arch.space.num_nodes + 1))
    matrices = (2 + edges) * hidden * 2 * hidden  # W_x, W_h and one per edge
    return vocab * hidden + matrices + vocab, matrices + hidden * vocab
