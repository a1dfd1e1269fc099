"""SynFlow: R = Σ of the outputs of the network with |θ| on an all-ones input, in float64 and with
batch norm removed; score Σ |θ ⊙ ∂R/∂θ| over Conv2d/Linear weights (Tanaka et al., NeurIPS 2020;
as a NAS proxy, Abdelfattah et al. 2021, whose code removes batch norm and runs in double). Data-free:
only the images' shape is used."""

from __future__ import annotations

import torch

from nas.proxies.base import register_proxy, weight_layers, without_norms


@register_proxy("synflow", needs_data=False, source="Tanaka et al. 2020; Abdelfattah et al. 2021")
def synflow(net, images, labels) -> float:
    net = without_norms(net).double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64, device=images.device)
    net(ones).sum().backward()
    return float(
        sum(
            (layer.weight * layer.weight.grad).abs().sum().item()
            for layer in weight_layers(net)
            if layer.weight.grad is not None
        )
    )
