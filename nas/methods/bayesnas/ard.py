"""Hierarchical automatic relevance determination (HARD) of switches, as BayesNAS updates it.

Each switch s_i (a scalar multiplying a path, or a channel group) has a Gaussian prior N(0, γ_i).
Training minimises the data loss plus the re-weighted group lasso Σ_i λ_i · ω_i · |s_i|; after it,
one Laplace step updates, element-wise (Zhou et al. 2019, as in the authors' `Algorithm.update`):

    Ĥ_i = H_i / λ_i                       (H: diagonal Hessian of the data loss w.r.t. s)
    C_i = (1/γ_i + Ĥ_i)^-1                (posterior variance)
    ω_i = sqrt(|1/γ_i - C_i/γ_i²|)        (new lasso weight, from the old γ; computed as the equal
                                           sqrt(Ĥ_i / (1 + γ_i Ĥ_i)), which stays exact for small γ)
    γ_i = |s_i| / ω_i                     (new prior variance; 0 where Ĥ_i = 0: no evidence)
    γ_child = (1/γ_child + 1/γ_parent)^-1 (hierarchy: an edge's switch governs its ops' switches)

A group of several switches would use ‖s_g‖₂ and Σ over the group in ω; here every switch is its own
group (a switch is one scalar shared by all cells of a type, where the authors keep one copy per
cell and group the copies). γ → 0 means irrelevant: paths are pruned by γ, not by |s|.

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
    """The prior state (γ, ω, C, H) of `len(lambdas)` switches; `parents[i]` is i's parent or -1."""

    def __init__(self, lambdas: Sequence[float], parents: Sequence[int]):
        super().__init__()
        n = len(lambdas)
        check(n >= 1 and len(parents) == n, "HierarchicalARD: one lambda and one parent per switch")
        check(
            all(float(v) > 0 for v in lambdas),
            f"every lambda must be > 0 (the paper: 0.005, 0.007, 0.01), got {sorted(set(lambdas))}",
        )
        check(
            all(p == -1 or (0 <= p < n and parents[p] == -1) for p in parents),
            "HierarchicalARD: a parent must be a switch without a parent (two levels: edge, op)",
        )
        self.register_buffer("lambdas", torch.tensor([float(v) for v in lambdas]))
        self.register_buffer("parents", torch.tensor(list(parents), dtype=torch.long))
        # γ = ω = 1 before the first update (ours: the code draws them from U[0, 1))
        self.register_buffer("gamma", torch.ones(n))
        self.register_buffer("omega", torch.ones(n))
        self.register_buffer("variance", torch.zeros(n))  # C, after an update
        self.register_buffer("hessian", torch.zeros(n))  # H of the last update
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def penalty(self, switches: torch.Tensor) -> torch.Tensor:
        """Σ λ_i ω_i |s_i|: the re-weighted group lasso of the current switches."""
        weights = (self.lambdas * self.omega).to(switches.dtype)
        return (weights * switches.abs()).sum()

    @torch.no_grad()
    def update(self, switches: torch.Tensor, hessian: torch.Tensor) -> None:
        """One Laplace step from the trained `switches` and the data loss's diagonal `hessian`."""
        s = switches.detach().to(self.gamma)
        h = hessian.detach().to(self.gamma).clamp_min(0)  # a curvature estimate below 0 is noise
        check(
            s.shape == h.shape == self.gamma.shape,
            f"ARD update: switches {tuple(s.shape)} and hessian {tuple(h.shape)} must both be "
            f"{tuple(self.gamma.shape)}",
        )
        gamma = self.gamma
        scaled = h / self.lambdas
        self.variance = gamma / (1 + gamma * scaled)  # = (1/γ + Ĥ)^-1, also at γ = 0
        # ω² = 1/γ − C/γ² = Ĥ / (1 + γĤ): the same value without cancelling two large terms
        self.omega = (scaled / (1 + gamma * scaled)).sqrt()
        # no curvature (Ĥ = 0): the switch does not change the loss, no evidence for it: γ = 0
        self.gamma = torch.where(
            scaled > 0, s.abs() / self.omega.clamp_min(torch.finfo(self.omega.dtype).tiny), 0.0
        )
        self.hessian = h
        self.gamma = self.hierarchical(self.gamma)
        self.updates += 1

    def hierarchical(self, gamma: torch.Tensor) -> torch.Tensor:
        """γ_child <- (1/γ_child + 1/γ_parent)^-1 for every switch with a parent (precisions add)."""
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
