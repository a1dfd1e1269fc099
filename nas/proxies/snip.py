"""SNIP: Σ |W ⊙ ∂L/∂W| over Conv2d/Linear weights, cross-entropy on one batch (Lee et al., ICLR
2019; as a NAS proxy, Abdelfattah et al. 2021: the saliency of multiplying each weight by a mask c
at c = 1, ∂L/∂c = W ⊙ ∂L/∂W)."""

from __future__ import annotations

import torch.nn.functional as F

from nas.proxies.base import register_proxy, weight_layers


@register_proxy("snip", needs_data=True, source="Lee et al. 2019; Abdelfattah et al. 2021")
def snip(net, images, labels) -> float:
    net.zero_grad()
    F.cross_entropy(net(images), labels).backward()
    return float(
        sum(
            (layer.weight * layer.weight.grad).abs().sum().item()
            for layer in weight_layers(net)
            if layer.weight.grad is not None
        )
    )
