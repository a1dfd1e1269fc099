"""Multiply-accumulates of one example (`nas.results.complexity.count_macs`'s convention)."""

from __future__ import annotations

from nas.proxies.base import register_proxy
from nas.results.complexity import count_macs


@register_proxy("macs", needs_data=False, source="MACs of one example")
def macs(net, images, labels) -> float:
    return float(count_macs(net, tuple(images.shape[1:])))
