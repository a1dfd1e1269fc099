"""Symmetrized KL divergence between two models' class distributions (the paper's Figs. 6 and 7).

Both models are given as logits; the divergence is computed from `log_softmax`, never from
probabilities that may underflow, so logits of +-1e4 give a finite (large) value instead of NaN/Inf.
"""

from __future__ import annotations

import torch

from nas.errors import check


def _log_probs(logits: torch.Tensor, name: str) -> torch.Tensor:
    """Validated float log-probabilities [N, C] of `logits`."""
    check(
        isinstance(logits, torch.Tensor),
        f"{name} must be a torch.Tensor of logits [N, C], got {type(logits).__name__}; "
        "wrap it with torch.as_tensor(...)",
    )
    check(
        logits.dim() == 2 and logits.shape[1] >= 1,
        f"{name} must have shape [N, C] (examples x classes), got {tuple(logits.shape)}; "
        "add a batch dimension with .unsqueeze(0) for a single example",
    )
    # Half precision loses the small differences that matter here; compute in float32 at least.
    if not logits.is_floating_point() or logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    check(
        bool(torch.isfinite(logits).all()),
        f"{name} contains NaN or Inf logits; the model's outputs are broken upstream "
        "(check for a diverged loss or an all-zero mask before the classifier)",
    )
    return torch.log_softmax(logits, dim=1)


def symmetric_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Per-example D(p||q) + D(q||p) [N] of the class distributions given by logits [N, C]."""
    log_p = _log_probs(logits_p, "logits_p")
    log_q = _log_probs(logits_q, "logits_q")
    check(
        log_p.shape == log_q.shape,
        f"logits_p and logits_q must have the same shape, got {tuple(log_p.shape)} and "
        f"{tuple(log_q.shape)}; evaluate both models on the same batch",
    )
    log_q = log_q.to(log_p.dtype)
    # D(p||q) + D(q||p) = sum_c (p_c - q_c)(log p_c - log q_c): every term is >= 0 (the two factors
    # share a sign), identical inputs give exactly 0, and finite log-probs keep every term finite
    # even where p_c or q_c underflows to 0.
    return ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=1)


def mean_symmetric_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Symmetrized KL averaged over the examples (a scalar tensor), as plotted in Figs. 6 and 7."""
    per_example = symmetric_kl(logits_p, logits_q)
    check(
        per_example.numel() > 0,
        "mean_symmetric_kl needs at least one example, got an empty batch [0, C]",
    )
    return per_example.mean()
