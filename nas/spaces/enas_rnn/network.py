"""ENAS recurrent networks: the supernet holding every (node, earlier node) edge, and children.

A language model: embedding (its matrix is also the softmax's, weight tying) -> the searched cell
run over time -> linear decoder. Per time step t, with x_t the embedded token and h_{t-1} the last
output (both under their variational dropout masks where they enter a matrix product):
    node 1:  [a, g] = W_x x_t + W_h h_{t-1},   s_1 = σ(g) ⊙ f_1(a) + (1 - σ(g)) ⊙ h_{t-1}
    node l:  [a, g] = W_{l,j} s_j,              s_l = σ(g) ⊙ f_l(a) + (1 - σ(g)) ⊙ s_j
(highway connections; j the node l reads, f_l its activation), and h_t = the mean of the loose
ends, scaled down to norm `max_hidden_norm` where it is longer (ENAS-PyTorch: 25). Each edge (l, j) has its own W_{l,j} [hidden -> 2·hidden], shared by the four activations; it
is the path ("node{l}/input", "node{j}"). Activations hold no weights. No biases (enas_lm).

Path weights, one row per ghost batch (here: a group of sequences): node l computes
Σ_{j,a} w_in[j] · w_act[a] · s_l(j, a), node 1 Σ_a w_act[a] · s_1(a), and the output
Σ_k L_k s_k / Σ_k L_k with L_k = Π_{l>k} (1 - w_in_l[k]), which is 1 exactly on the loose ends of
0/1 weights. An edge runs only on the sequences of the ghost batches that use it (gathered), or on
all of them (dense); both give the same result. Shapes: tokens [N, T] (int64); logits [N, T, V];
hidden [N, hidden].
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import check
from nas.ghost_bn import ghost_sizes
from nas.spaces.base import Architecture
from nas.spaces.enas_rnn.space import EnasRnnSpace, inputs_of, loose_ends
from nas.spaces.interface import SupernetBase

ACT_FN = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
}
# per node: [(j, rows or None = every sequence, [(activation, weight [n, 1] or None)])]
Plan = list[list[tuple[int, torch.Tensor | None, list[tuple[str, torch.Tensor | None]]]]]


def rnn_config(
    num_classes: int,
    hidden: int,
    dropout: float,
    dropout_hidden: float,
    dropout_input: float,
    dropout_embed: float,
    in_channels: int,
    max_hidden_norm: float | None,
) -> dict:
    """The network settings of supernet and child, checked (`Supernet.config`)."""
    check(
        isinstance(num_classes, int) and num_classes >= 2,
        f"the vocabulary size (num_classes={num_classes!r}) must be an integer >= 2",
    )
    check(
        isinstance(hidden, int) and hidden >= 1,
        f"model.hidden={hidden!r} must be an integer >= 1 (ENAS: 1000)",
    )
    check(
        in_channels == 1,
        f"in_channels={in_channels!r}: a language model reads one token per step; use a text "
        "dataset (dataset=ptb or dataset=shakespeare)",
    )
    rates = {
        "dropout": dropout,
        "dropout_hidden": dropout_hidden,
        "dropout_input": dropout_input,
        "dropout_embed": dropout_embed,
    }
    for key, value in rates.items():
        check(
            isinstance(value, int | float) and 0 <= value < 1,
            f"model.{key}={value!r} must lie in [0, 1)",
        )
    check(
        max_hidden_norm is None or max_hidden_norm > 0,
        f"model.max_hidden_norm={max_hidden_norm!r} must be null (none) or > 0 (ENAS-PyTorch: 25)",
    )
    return {
        "num_classes": num_classes,
        "hidden": hidden,
        "in_channels": 1,
        **rates,
        "max_hidden_norm": max_hidden_norm,
    }


def _refuse_image_settings(settings: Mapping) -> None:
    """Stop when the network is built by an image module (model=enas, standalone, ...)."""
    check(
        not settings,
        f"search_space=enas_rnn builds a language model, which takes no {sorted(settings)}: "
        "train it with model=enas_rnn (or model=lm_standalone for one cell) on a text dataset "
        "(dataset=ptb or dataset=shakespeare)",
    )


def edge_key(node: int, j: int) -> str:
    """Name of the weight of node `node` reading node `j`."""
    return f"{node}_{j}"


def _mask(shape, p: float, like: torch.Tensor) -> torch.Tensor:
    """Inverted-dropout mask of `shape` (1/(1-p) where kept), from torch's global RNG."""
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1 - p) / (1 - p)


class _RnnLayers:
    """Embedding, cell and tied decoder: built and run alike by supernet and child."""

    def _build_layers(self, edges: Iterable[tuple[int, int]], config: Mapping) -> None:
        vocab, hidden = config["num_classes"], config["hidden"]
        self.embedding = nn.Embedding(vocab, hidden)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.w_x = nn.Linear(hidden, 2 * hidden, bias=False)
        self.w_h = nn.Linear(hidden, 2 * hidden, bias=False)
        self.edges = nn.ModuleDict(
            {edge_key(n, j): nn.Linear(hidden, 2 * hidden, bias=False) for n, j in edges}
        )
        self.decoder_bias = nn.Parameter(torch.zeros(vocab))

    def run(
        self,
        tokens: torch.Tensor,
        hidden: torch.Tensor | None = None,
        weights: Mapping[str, torch.Tensor] | None = None,
        ghost=None,
        dense: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [N, T, V], last output [N, hidden]) from `hidden` (zeros when None)."""
        check(
            tokens.dim() == 2 and not tokens.is_floating_point(),
            f"the language model takes token ids [sequences, steps], got {tuple(tokens.shape)} "
            f"{tokens.dtype}",
        )
        acts, plan, loose = self._plan(tokens.shape[0], weights, ghost, dense, tokens.device)
        c = self.config
        emb = self.embedding.weight
        training = self.training
        if training and c["dropout_embed"]:  # drop whole word types (embedding dropout)
            emb = emb * _mask((emb.shape[0], 1), c["dropout_embed"], emb)
        x = F.embedding(tokens, emb)
        n, steps, size = x.shape
        if training and c["dropout_input"]:  # variational: one mask per sequence for all steps
            x = x * _mask((n, 1, size), c["dropout_input"], x)
        h = x.new_zeros(n, size) if hidden is None else hidden.to(x.dtype)
        mask_h = (
            _mask((n, size), c["dropout_hidden"], x) if training and c["dropout_hidden"] else None
        )
        xs = self.w_x(x)  # [N, T, 2H]: x_t's part of node 1, every step at once
        outputs = []
        for t in range(steps):
            h = self._step(xs[:, t], h, mask_h, acts, plan, loose)
            outputs.append(h)
        out = torch.stack(outputs, 1)
        if training and c["dropout"]:
            out = out * _mask((n, 1, size), c["dropout"], out)
        return out @ self.embedding.weight.t() + self.decoder_bias, h

    def _step(self, xw, h_prev, mask_h, acts, plan: Plan, loose) -> torch.Tensor:
        """One time step of the cell: the new output [N, hidden]."""
        read = h_prev if mask_h is None else h_prev * mask_h
        a, g = (xw + self.w_h(read)).chunk(2, 1)
        first = _highway(a, torch.sigmoid(g), h_prev, acts)  # None: no activation is on
        nodes = [None, first if first is not None else torch.zeros_like(h_prev)]
        for node, edges in enumerate(plan, start=2):
            total = None
            for j, rows, terms in edges:
                s_j = nodes[j] if rows is None else nodes[j].index_select(0, rows)
                m = mask_h if mask_h is None or rows is None else mask_h.index_select(0, rows)
                a, g = self.edges[edge_key(node, j)](s_j if m is None else s_j * m).chunk(2, 1)
                part = _highway(a, torch.sigmoid(g), s_j, terms)
                if rows is not None:
                    part = nodes[1].new_zeros(nodes[1].shape).index_add(0, rows, part)
                total = part if total is None else total + part
            nodes.append(total if total is not None else torch.zeros_like(nodes[1]))
        ends, scale = loose
        out = None
        for k, weight in ends:
            term = nodes[k] if weight is None else weight * nodes[k]
            out = term if out is None else out + term
        out = out / scale
        limit = self.config["max_hidden_norm"]
        if limit:  # cells of ReLU and identity nodes can grow without bound over time
            out = out * (limit / out.norm(dim=1, keepdim=True).clamp_min(limit))
        return out


def _highway(a, gate, s_in, terms) -> torch.Tensor | None:
    """Σ over (activation, weight) of weight · (gate ⊙ f(a) + (1 - gate) ⊙ s_in)."""
    total = None
    for act, weight in terms:
        value = gate * ACT_FN[act](a) + (1 - gate) * s_in
        term = value if weight is None else weight * value
        total = term if total is None else total + term
    return total


class EnasRnnSupernet(SupernetBase, _RnnLayers):
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
        _refuse_image_settings(image_network)
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


class EnasRnnChild(nn.Module, _RnnLayers):
    """The language model of one architecture: only its chosen edges exist."""

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
        _refuse_image_settings(image_network)
        super().__init__()
        check(
            isinstance(arch.space, EnasRnnSpace),
            f"EnasRnnChild needs an architecture of the enas_rnn space, got {arch.space.name!r}",
        )
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
        self.space, self.arch = arch.space, arch
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
