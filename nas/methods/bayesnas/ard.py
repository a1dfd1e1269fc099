"""Hierarchical automatic relevance determination (HARD) of switches, as BayesNAS updates it.

Switches come in groups: group g holds the copies s_g of one path's switch (one per cell of a type,
as the authors' code keeps them; a group of one for a switch that stands alone). Each group has a
Gaussian prior N(0, γ_g) on its switches. Training minimises the data loss plus the re-weighted
group lasso Σ_g λ_g · ω_g · ‖s_g‖₂; after it, one Laplace step updates (Zhou et al. 2019, as in the
authors' `Algorithm.update`), for every switch i of group g:

    Ĥ_i = H_i / λ_g                        (H: diagonal Hessian of the data loss w.r.t. s)
    C_i = (1/γ_g + Ĥ_i)^-1                 (posterior variance)
    ω_g = sqrt(Σ_i∈g |1/γ_g - C_i/γ_g²|)   (new lasso weight, from the old γ; computed as the equal
                                            sqrt(Σ_i Ĥ_i / (1 + γ_g Ĥ_i)), exact for small γ)
    γ_g = ‖s_g‖₂ / ω_g                     (new prior variance; 0 where Σ_i Ĥ_i = 0: no evidence)
    γ_child = (1/γ_child + 1/γ_parent)^-1  (hierarchy of groups: an edge governs its ops)

A group of one is the element-wise form: ‖s_g‖₂ = |s_i|, ω_g = sqrt(Ĥ_i / (1 + γ_g Ĥ_i)).
γ → 0 means irrelevant: paths are pruned by γ, not by |s|.

The diagonal Hessian comes from `ggn_diagonal` (Gauss-Newton: exact where the logits are linear in
the switches; never negative) or `hutchinson_diagonal` (an unbiased estimate of the true Hessian's
diagonal from Hessian-vector products), both over the switch vector only, with autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from nas.errors import check


class HierarchicalARD(nn.Module):
    """The prior state of `len(lambdas)` switch groups: γ, ω per group; C, H per switch.

    `parents[g]` is group g's parent group or -1; `groups[i]` is the group of switch i (default:
    every switch its own group, in order). Only γ, ω, C, H and the count of updates are state:
    `groups` follows from the arguments, so checkpoints written before groups existed still load.
    """

    def __init__(
        self,
        lambdas: Sequence[float],
        parents: Sequence[int],
        groups: Sequence[int] | None = None,
    ):
        super().__init__()
        n = len(lambdas)
        check(n >= 1 and len(parents) == n, "HierarchicalARD: one lambda and one parent per group")
        check(
            all(float(v) > 0 for v in lambdas),
            f"every lambda must be > 0 (the paper: 0.005, 0.007, 0.01), got {sorted(set(lambdas))}",
        )
        check(
            all(p == -1 or (0 <= p < n and parents[p] == -1) for p in parents),
            "HierarchicalARD: a parent must be a group without a parent (two levels: edge, op)",
        )
        groups = list(range(n)) if groups is None else [int(g) for g in groups]
        check(
            set(groups) == set(range(n)),
            f"HierarchicalARD: every switch's group must be one of 0..{n - 1} and every group "
            f"must hold a switch, got groups {sorted(set(groups))}",
        )
        self.singletons = groups == list(range(n))  # the element-wise form: one switch per group
        self.register_buffer("lambdas", torch.tensor([float(v) for v in lambdas]))
        self.register_buffer("parents", torch.tensor(list(parents), dtype=torch.long))
        self.register_buffer("groups", torch.tensor(groups, dtype=torch.long), persistent=False)
        # γ = ω = 1 before the first update (ours: the code draws them from U[0, 1))
        self.register_buffer("gamma", torch.ones(n))
        self.register_buffer("omega", torch.ones(n))
        self.register_buffer("variance", torch.zeros(len(groups)))  # C, after an update
        self.register_buffer("hessian", torch.zeros(len(groups)))  # H of the last update
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def group_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Σ over the switches of each group: [switches] -> [groups]."""
        return values.new_zeros(len(self.gamma)).index_add(0, self.groups, values)

    def group_norms(self, switches: torch.Tensor) -> torch.Tensor:
        """‖s_g‖₂ of every group (|s_i| for groups of one); its gradient is 0 where s_g = 0."""
        if self.singletons:
            return switches.abs()
        squares = self.group_sum(switches.square())
        # sqrt's gradient is infinite at 0: take it only where the group is not all zero
        on = squares > 0
        return torch.where(on, torch.where(on, squares, 1.0).sqrt(), 0.0)

    def penalty(self, switches: torch.Tensor) -> torch.Tensor:
        """Σ_g λ_g ω_g ‖s_g‖₂: the re-weighted group lasso of the current switches."""
        weights = (self.lambdas * self.omega).to(switches.dtype)
        return (weights * self.group_norms(switches)).sum()

    @torch.no_grad()
    def update(self, switches: torch.Tensor, hessian: torch.Tensor) -> None:
        """One Laplace step from the trained `switches` and the data loss's diagonal `hessian`."""
        s = switches.detach().to(self.gamma)
        h = hessian.detach().to(self.gamma).clamp_min(0)  # a curvature estimate below 0 is noise
        check(
            s.shape == h.shape == self.groups.shape,
            f"ARD update: switches {tuple(s.shape)} and hessian {tuple(h.shape)} must both be "
            f"{tuple(self.groups.shape)}",
        )
        gamma = self.gamma[self.groups]  # every switch has its group's γ (ours: the code's γ
        # copies differ only by their random start, and its ω reads the last copy's)
        scaled = h / self.lambdas[self.groups]
        self.variance = gamma / (1 + gamma * scaled)  # = (1/γ + Ĥ)^-1, also at γ = 0
        # ω² = Σ 1/γ − C/γ² = Σ Ĥ / (1 + γĤ): the same value without cancelling two large terms
        self.omega = self.group_sum(scaled / (1 + gamma * scaled)).sqrt()
        # no curvature (Ĥ = 0): the switches do not change the loss, no evidence for them: γ = 0
        evidence = self.group_sum(scaled) > 0
        self.gamma = torch.where(
            evidence,
            self.group_norms(s) / self.omega.clamp_min(torch.finfo(self.omega.dtype).tiny),
            0.0,
        )
        self.hessian = h
        self.gamma = self.hierarchical(self.gamma)
        self.updates += 1

    def hierarchical(self, gamma: torch.Tensor) -> torch.Tensor:
        """γ_child <- (1/γ_child + 1/γ_parent)^-1 for every group with a parent (precisions add)."""
        has = self.parents >= 0
        out = gamma.clone()
        parent = gamma[self.parents.clamp_min(0)]
        # written as a product over a sum: exact 0 when either is 0, no division by zero
        combined = gamma * parent / (gamma + parent).clamp_min(torch.finfo(gamma.dtype).tiny)
        out[has] = combined[has]
        return out


def ggn_diagonal(
    logits_of: Callable[[torch.Tensor], torch.Tensor], switches: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """Diagonal of the Gauss-Newton matrix of the mean cross-entropy w.r.t. `switches`.

    `logits_of(s)` returns logits [N, K] for the switch vector s. With J_n = ∂logits_n/∂s and
    p_n = softmax(logits_n): diag = mean_n Σ_k p_nk J_nk² − (Σ_k p_nk J_nk)². It equals the
    Hessian's diagonal wherever the logits are linear in s, and is never negative. (Labels do not
    enter: the Gauss-Newton matrix of cross-entropy depends on the predictions only.)
    """
    s = switches.detach().requires_grad_(True)
    logits = logits_of(s)
    n, k = logits.shape
    p = logits.detach().softmax(1)
    jac = torch.empty(n * k, s.numel(), dtype=s.dtype, device=s.device)
    eye = torch.eye(n * k, dtype=logits.dtype, device=logits.device).view(n * k, n, k)
    for start in range(0, n * k, chunk):  # one batched backward per chunk of output entries
        rows = eye[start : start + chunk]
        (grads,) = torch.autograd.grad(
            logits, s, grad_outputs=rows, is_grads_batched=True, retain_graph=True
        )
        jac[start : start + len(rows)] = grads.reshape(len(rows), -1)
    jac = jac.view(n, k, -1)
    mean_j = (p.unsqueeze(2) * jac).sum(1)
    return ((p.unsqueeze(2) * jac.square()).sum(1) - mean_j.square()).mean(0).detach()


def hutchinson_diagonal(
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    switches: torch.Tensor,
    probes: int = 16,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Hutchinson's estimate E[v ⊙ Hv] (v Rademacher) of the Hessian's diagonal of `loss_of(s)`."""
    check(isinstance(probes, int) and probes >= 1, f"probes={probes!r} must be an integer >= 1")
    s = switches.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_of(s), s, create_graph=True)
    total = torch.zeros_like(s)
    for _ in range(probes):
        v = torch.randint(0, 2, s.shape, generator=generator).to(s) * 2 - 1
        (hv,) = torch.autograd.grad(grad, s, grad_outputs=v, retain_graph=True)
        total += v * hv
    return (total / probes).detach()
