"""The language model the ENAS recurrent networks run: embedding, the searched cell over time, tied
decoder; and its settings (`rnn_config`).

Per time step t, with x_t the embedded token and h_{t-1} the last output (both under their
variational dropout masks where they enter a matrix product), node 1 computes [a, g] = W_x x_t +
W_h h_{t-1} and node l [a, g] = W_{l,j} s_j, each s = σ(g) ⊙ f(a) + (1 - σ(g)) ⊙ (its input), and
h_t is the mean of the loose ends (see `network.py`). Supernet and child differ only in their
`_plan`: which edges and activations run, with which weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import check

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


def refuse_image_settings(settings: Mapping) -> None:
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


class RnnLayers:
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
