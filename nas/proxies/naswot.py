"""NASWOT: the binary codes c (ReLU unit active or not) of each image over every ReLU of the
network; K[i, j] = number of units on which images i and j agree (Σ over ReLUs of c cᵀ +
(1 − c)(1 − c)ᵀ); score log |det K| (Mellor et al., ICML 2021). The ReLUs are found wherever the
network calls them (torch.relu, F.relu, nn.ReLU, Tensor.relu), not by module type."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from nas.proxies.base import register_proxy

_RELUS = {torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu, torch.Tensor.relu_}


class ReluCodes(TorchFunctionMode):
    """Adds the agreement kernel of every ReLU output computed inside the `with` block to `K`."""

    def __init__(self, batch: int):
        super().__init__()
        self.kernel = torch.zeros(batch, batch, dtype=torch.float64)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _RELUS:
            codes = (out.detach() > 0).reshape(len(out), -1).double().cpu()
            self.kernel += codes @ codes.T + (1 - codes) @ (1 - codes).T
        return out


@register_proxy("naswot", needs_data=True, source="Mellor et al. 2021")
def naswot(net, images, labels) -> float:
    with torch.no_grad(), ReluCodes(len(images)) as codes:
        net(images)
    return float(torch.linalg.slogdet(codes.kernel)[1])
