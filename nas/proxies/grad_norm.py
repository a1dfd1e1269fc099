"""grad-norm: Σ over Conv2d/Linear layers of ‖∂L/∂W‖₂ of the cross-entropy on one batch
(Abdelfattah et al., ICLR 2021, "Zero-Cost Proxies for Lightweight NAS"; their `grad_norm`)."""

from __future__ import annotations

import torch.nn.functional as F

from nas.proxies.base import register_proxy, weight_layers


@register_proxy("grad_norm", needs_data=True, source="Abdelfattah et al. 2021")
def grad_norm(net, images, labels) -> float:
    net.zero_grad()
    F.cross_entropy(net(images), labels).backward()
    return float(
        sum(
            layer.weight.grad.norm().item()
            for layer in weight_layers(net)
            if layer.weight.grad is not None
        )
    )
