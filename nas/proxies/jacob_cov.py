"""Jacobian covariance: the input Jacobians J (one row per image, of Σ logits) of one batch,
their correlation matrix Σ with eigenvalues λ; score −Σ [log(λ + k) + 1/(λ + k)], k = 1e-5
(Mellor et al. 2020, "Neural Architecture Search without Training", arXiv v1; the form of
Abdelfattah et al. 2021's `jacob_cov`). Higher: less correlated Jacobians across images."""

from __future__ import annotations

import math

import torch

from nas.proxies.base import register_proxy

K = 1e-5


@register_proxy("jacob_cov", needs_data=True, source="Mellor et al. 2020 (v1)")
def jacob_cov(net, images, labels) -> float:
    x = images.detach().clone().requires_grad_(True)
    net.zero_grad()
    out = net(x)
    out.backward(torch.ones_like(out))
    if x.grad is None:  # the output ignores the input (e.g. a cell of `none` ops): undefined
        return math.nan
    correlations = torch.corrcoef(x.grad.reshape(len(x), -1).double())
    if not torch.isfinite(correlations).all():  # constant Jacobians: no correlation is defined
        return math.nan  # (and eigvalsh would not converge)
    eigenvalues = torch.linalg.eigvalsh(correlations)
    return float(-(torch.log(eigenvalues + K) + 1.0 / (eigenvalues + K)).sum())
