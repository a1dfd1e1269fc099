"""ENAS's controller (Pham et al., ICML 2018): an LSTM that samples an architecture of any space.

The controller walks the space's decisions in order, one LSTM step per decision (the authors' code,
`general_controller.py` and `micro_controller.py`):
- a one-of-k decision over op names is a softmax over `h @ W + b`; the chosen option's embedding
  is the next input;
- a decision over earlier nodes (`Decision.pointer`) scores every candidate node j by attention,
  `v^T tanh(W1 a_j + W2 h)`, with a_j the node's anchor (the LSTM state remembered for it);
  one-of-k picks one node (next input: its anchor); any-subset (ENAS macro skips) draws an
  independent Bernoulli per node with logits [-s_j, s_j] (next input: Σ chosen anchors / (1 + count));
- an any-subset decision over names draws a Bernoulli per option the same way from `h @ W`;
- any other subset rule (e.g. 1..2 of 7 ops) is one softmax over the valid subsets.
Logits are shaped as in the code: divided by `temperature`, then `C * tanh(.)`; decisions over names
use `C / op_tanh_reduce`. Nodes (`SearchSpace.nodes`) get anchors: a cell input is an LSTM step fed the
go embedding with a zero anchor (`before`); a node made by a decision takes that step's state (`at`);
a node completed by a decision takes one extra step's state (`after`), after which the input is the
go embedding again. Options of one kind (e.g. every op decision) share their softmax and embedding.

Everything is batched: one call samples (or scores, with `archs=`) B architectures at once.

Longer than 300 lines: one policy network whose plan (which step reads which state) and batched
sampling loop are read together; split, neither would make sense alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nas.errors import check
from nas.spaces.base import Architecture, Decision, SearchSpace

CHOICE, POINTER, BERNOULLI, POINTER_BERNOULLI, SUBSET = (
    "choice",
    "pointer",
    "bernoulli",
    "pointer_bernoulli",
    "subset",
)
MAX_SUBSETS = 4096  # a decision with more valid subsets than this needs a rule of its own


@dataclass
class ControllerSample:
    """B architectures with what REINFORCE needs of them (tensors are [B])."""

    archs: list[Architecture]
    log_prob: torch.Tensor  # Σ over decisions of log π(choice); carries gradients
    entropy: torch.Tensor  # Σ over decisions of the full entropy of each distribution; detached
    skip_kl: torch.Tensor  # mean over any-subset pointer decisions of KL(p_skip || target)
    skip_rate: torch.Tensor  # fraction of candidate skips taken (any-subset pointer decisions)
    probs: dict[str, torch.Tensor]  # decision -> [B, classes] (Bernoulli: [B, options] P(on))


def decision_mode(decision: Decision) -> str:
    """How the controller draws `decision` (see the module docstring)."""
    free = decision.min_k == 0 and decision.max_k == len(decision.options)
    if decision.min_k == decision.max_k == 1:
        return POINTER if decision.pointer else CHOICE
    if free:
        return POINTER_BERNOULLI if decision.pointer else BERNOULLI
    return SUBSET


def _lstm_step(
    w: torch.Tensor, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' LSTM cell: no bias, gates [x, h] @ W in the order i, f, o, g."""
    i, f, o, g = (torch.cat([x, h], 1) @ w).chunk(4, 1)
    c = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * c
    return torch.sigmoid(o) * torch.tanh(c), c


class Controller(nn.Module):
    """Samples architectures of `space` autoregressively; `forward` returns a `ControllerSample`."""

    def __init__(
        self,
        space: SearchSpace,
        hidden: int = 64,
        temperature: float | None = None,
        tanh_constant: float | None = 1.5,
        op_tanh_reduce: float = 1.0,
        op_bias: Mapping[str, float] | None = None,
        skip_target: float = 0.4,
        init_range: float = 0.1,
        seed: int | None = None,
    ):
        super().__init__()
        check(
            isinstance(hidden, int) and hidden >= 1,
            f"controller.hidden={hidden!r} must be an integer >= 1 (paper: 100, code: 64)",
        )
        check(
            temperature is None or temperature > 0,
            f"controller.temperature={temperature!r} must be null (none) or > 0 (paper: 5.0)",
        )
        check(
            tanh_constant is None or tanh_constant > 0,
            f"controller.tanh_constant={tanh_constant!r} must be null (none) or > 0 (paper: 2.5)",
        )
        check(
            op_tanh_reduce > 0,
            f"controller.op_tanh_reduce={op_tanh_reduce!r} must be > 0 (1: none; micro code: 2.5)",
        )
        check(
            0 < skip_target < 1,
            f"controller.skip_target={skip_target!r} must lie in (0, 1) (the code's: 0.4)",
        )
        self.space, self.hidden = space, hidden
        self.temperature, self.tanh_constant = temperature, tanh_constant
        self.op_tanh_reduce, self.skip_target = op_tanh_reduce, skip_target
        self.modes = {d.name: decision_mode(d) for d in space.decisions}
        self._check_space()
        self.w_lstm = nn.Parameter(torch.empty(2 * hidden, 4 * hidden))
        self.g_emb = nn.Parameter(torch.empty(1, hidden))
        self.w_attn_1 = nn.Linear(hidden, hidden, bias=False)
        self.w_attn_2 = nn.Linear(hidden, hidden, bias=False)
        self.v_attn = nn.Linear(hidden, 1, bias=False)
        # decisions of one kind over the same options share a softmax and an embedding (the code's
        # single w_soft / w_emb for every op decision)
        self.kind_of: dict[str, str] = {}
        self.classes: dict[str, list[tuple[str, ...]]] = {}  # kind -> class -> chosen options
        soft, emb = {}, {}
        for d in space.decisions:
            mode = self.modes[d.name]
            if mode in (POINTER, POINTER_BERNOULLI):
                continue
            classes = self._classes(d, mode)
            kind = f"k{len(self.classes)}"
            for other, known in self.classes.items():
                if known == classes and self._mode_of_kind(other) == mode:
                    kind = other
            self.kind_of[d.name] = kind
            if kind not in self.classes:
                self.classes[kind] = classes
                soft[kind] = nn.Linear(hidden, len(classes))
                emb[kind] = nn.Embedding(len(classes), hidden)
        self.w_soft, self.w_emb = nn.ModuleDict(soft), nn.ModuleDict(emb)
        init = None if seed is None else torch.Generator().manual_seed(seed)  # else torch's RNG
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range, generator=init)
        with torch.no_grad():  # no bias (macro code), or the micro code's {sep3x3: 10, sep5x5: 10}
            for kind, classes in self.classes.items():
                bias = [
                    float((op_bias or {}).get(k[0], 0.0)) if len(k) == 1 else 0.0 for k in classes
                ]
                self.w_soft[kind].bias.copy_(torch.tensor(bias))
        self._plan = self._build_plan()

    # -- structure --------------------------------------------------------------------------
    def _mode_of_kind(self, kind: str) -> str:
        return next(self.modes[n] for n, k in self.kind_of.items() if k == kind)

    @staticmethod
    def _classes(d: Decision, mode: str) -> list[tuple[str, ...]]:
        if mode in (CHOICE, BERNOULLI):
            return [(o,) for o in d.options]
        check(
            d.count() <= MAX_SUBSETS,
            f"decision {d.name!r} has {d.count():,} valid subsets (choose {d.min_k}..{d.max_k} of "
            f"{len(d.options)}); the controller draws such a decision as one softmax over its "
            f"subsets and allows at most {MAX_SUBSETS:,}",
        )
        return list(d.subsets())

    def _check_space(self) -> None:
        names = [d.name for d in self.space.decisions]
        seen: set[str] = set()
        position = {n: i for i, n in enumerate(names)}
        exists_before: dict[str, int] = {}  # node -> index of the first decision that may use it
        for node in self.space.nodes():
            check(
                node.at in position,
                f"space {self.space.name!r}: node {node.name!r} is tied to unknown decision "
                f"{node.at!r}",
            )
            check(node.name not in seen, f"space {self.space.name!r} repeats node {node.name!r}")
            seen.add(node.name)
            exists_before[node.name] = position[node.at] + (0 if node.when == "before" else 1)
        for d in self.space.decisions:
            if not d.pointer:
                continue
            late = [o for o in d.options if exists_before.get(o, math.inf) > position[d.name]]
            check(
                not late,
                f"space {self.space.name!r}: pointer decision {d.name!r} names {late}, which are "
                "not nodes that exist before it (SearchSpace.nodes)",
            )

    def _build_plan(self) -> list[tuple[str, str]]:
        """Steps: ("input", node), ("decide", decision), ("anchor", node) for `after` nodes."""
        by_decision: dict[str, list] = {}
        for node in self.space.nodes():
            by_decision.setdefault(node.at, []).append(node)
        plan = []
        for d in self.space.decisions:
            nodes = by_decision.get(d.name, [])
            plan += [("input", n.name) for n in nodes if n.when == "before"]
            plan.append(("decide", d.name))
            plan += [("at", n.name) for n in nodes if n.when == "at"]
            plan += [("anchor", n.name) for n in nodes if n.when == "after"]
        return plan

    # -- sampling -----------------------------------------------------------------------------
    def _shape(self, logits: torch.Tensor, named: bool) -> torch.Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            c = self.tanh_constant / (self.op_tanh_reduce if named else 1.0)
            logits = c * torch.tanh(logits)
        return logits

    def forward(
        self,
        batch: int = 1,
        generator: torch.Generator | None = None,
        archs: Sequence[Architecture] | None = None,
        greedy: bool = False,
    ) -> ControllerSample:
        """Sample `batch` architectures (with `generator`, a CPU generator), or score `archs`
        (teacher forcing: their log-probabilities under the current policy), or take the most
        likely choice at every step (`greedy`)."""
        if archs is not None:
            batch = len(archs)
            check(batch >= 1, "Controller: archs is empty; pass at least one architecture")
        dev = self.w_lstm.device
        h = c = torch.zeros(batch, self.hidden, device=dev)
        x = self.g_emb.expand(batch, -1)
        anchors: dict[str, torch.Tensor] = {}
        keys: dict[str, torch.Tensor] = {}  # W1 · anchor-state, what attention compares against
        log_prob = torch.zeros(batch, device=dev)
        entropy = torch.zeros(batch, device=dev)
        kls, skips, candidates = [], torch.zeros(batch, device=dev), 0
        chosen: dict[str, list[tuple[str, ...]]] = {}
        probs: dict[str, torch.Tensor] = {}
        for step, name in self._plan:
            if step == "input":  # a cell input: a step fed the go embedding, zero anchor
                h, c = _lstm_step(self.w_lstm, self.g_emb.expand(batch, -1), h, c)
                anchors[name], keys[name] = torch.zeros_like(h), self.w_attn_1(h)
                x = self.g_emb.expand(batch, -1)
                continue
            if step == "at":
                anchors[name], keys[name] = h, self.w_attn_1(h)
                continue
            if step == "anchor":
                h, c = _lstm_step(self.w_lstm, x, h, c)
                anchors[name], keys[name] = h, self.w_attn_1(h)
                x = self.g_emb.expand(batch, -1)
                continue
            d = self.space.decision(name)
            mode = self.modes[name]
            h, c = _lstm_step(self.w_lstm, x, h, c)
            given = None if archs is None else [a[name] for a in archs]
            if mode in (POINTER, POINTER_BERNOULLI):  # attention over the candidate nodes
                cand = torch.stack([keys[o] for o in d.options], 1)  # [B, n, H]
                scores = self.v_attn(torch.tanh(cand + self.w_attn_2(h).unsqueeze(1))).squeeze(2)
            else:
                scores = self.w_soft[self.kind_of[name]](h)
            named = mode not in (POINTER, POINTER_BERNOULLI)
            if mode in (BERNOULLI, POINTER_BERNOULLI):
                logits = self._shape(torch.stack([-scores, scores], 2), named)  # [B, n, 2]
                logp = torch.log_softmax(logits, 2)
                p_on = logp[..., 1].exp()
                if given is not None:
                    on = torch.tensor(
                        [[o in g for o in d.options] for g in given], device=dev, dtype=torch.bool
                    )
                elif greedy:
                    on = p_on > 0.5
                else:
                    draw = torch.rand(p_on.shape, generator=generator)
                    on = (draw < p_on.detach().float().cpu()).to(dev)
                log_prob = log_prob + torch.where(on, logp[..., 1], logp[..., 0]).sum(1)
                entropy = entropy - (logp.exp() * logp).sum((1, 2)).detach()
                probs[name] = p_on.detach()
                if mode == POINTER_BERNOULLI:
                    target = torch.tensor([1 - self.skip_target, self.skip_target], device=dev)
                    kls.append((logp.exp() * (logp - target.log())).sum((1, 2)))
                    skips, candidates = skips + on.sum(1), candidates + len(d.options)
                    picked = torch.stack([anchors[o] for o in d.options], 1)
                else:
                    picked = self.w_emb[self.kind_of[name]].weight.expand(batch, -1, -1)
                weight = on.to(picked.dtype).unsqueeze(2)
                x = (weight * picked).sum(1) / (1.0 + weight.sum(1))
                chosen[name] = [
                    tuple(o for o, v in zip(d.options, row, strict=True) if v)
                    for row in on.tolist()
                ]
                continue
            logp = torch.log_softmax(self._shape(scores, named), 1)
            classes = list(d.options) if mode == POINTER else self.classes[self.kind_of[name]]
            if given is not None:
                keys_of = [(o,) for o in d.options] if mode == POINTER else classes
                lookup = {key: j for j, key in enumerate(keys_of)}
                index = torch.tensor([lookup[g] for g in given], device=dev)
            elif greedy:
                index = logp.argmax(1)
            else:
                draw = torch.multinomial(logp.detach().float().exp().cpu(), 1, generator=generator)
                index = draw.squeeze(1).to(dev)
            log_prob = log_prob + logp.gather(1, index[:, None]).squeeze(1)
            entropy = entropy - (logp.exp() * logp).sum(1).detach()
            probs[name] = logp.detach().exp()
            rows = index.tolist()
            if mode == POINTER:
                x = torch.stack([anchors[o] for o in d.options], 1)[torch.arange(batch), index]
                chosen[name] = [(d.options[j],) for j in rows]
            else:
                x = self.w_emb[self.kind_of[name]](index)
                chosen[name] = [classes[j] for j in rows]
        built = (
            list(archs)
            if archs is not None
            else [Architecture(self.space, {n: chosen[n][b] for n in chosen}) for b in range(batch)]
        )
        skip_kl = torch.stack(kls, 1).mean(1) if kls else torch.zeros(batch, device=dev)
        rate = skips / candidates if candidates else torch.zeros(batch, device=dev)
        return ControllerSample(built, log_prob, entropy, skip_kl, rate, probs)

    @torch.no_grad()
    def sample(self, batch: int, generator: torch.Generator) -> list[Architecture]:
        """`batch` architectures drawn from the policy (no gradients kept)."""
        return self(batch, generator).archs

    @torch.no_grad()
    def greedy(self) -> Architecture:
        """The most likely choice at every step, in turn (the policy's current favourite)."""
        return self(1, greedy=True).archs[0]
