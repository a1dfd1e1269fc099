"""Parameter count: the size of the network (Ning et al., NeurIPS 2021, find it a strong baseline)."""

from __future__ import annotations

from nas.proxies.base import register_proxy
from nas.results.complexity import count_params


@register_proxy("params", needs_data=False, source="parameter count")
def params(net, images, labels) -> float:
    return float(count_params(net))
