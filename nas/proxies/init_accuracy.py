"""The untrained network's accuracy on one batch of training images (batch statistics in its batch
norms): the floor any trained score must clear, near 1 / classes for most architectures."""

from __future__ import annotations

import torch

from nas.proxies.base import register_proxy


@register_proxy("init_accuracy", needs_data=True, source="untrained one-batch accuracy")
def init_accuracy(net, images, labels) -> float:
    with torch.no_grad():
        return float((net(images).argmax(dim=1) == labels).double().mean())
