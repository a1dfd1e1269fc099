"""The training loss of a network with an auxiliary head (DARTS's evaluation network, ENAS's final
micro network): such a network returns (logits, auxiliary logits) in training, and the loss is
CE(logits) + weight · CE(auxiliary logits) (both papers: weight 0.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def loss_with_auxiliary(
    module, out: torch.Tensor | tuple[torch.Tensor, torch.Tensor], y: torch.Tensor, weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, main logits) of a network's output `out`: logits, or (logits, auxiliary logits).
    The auxiliary term is logged by `module` as train/aux_loss."""
    logits, aux = out if isinstance(out, tuple) else (out, None)
    loss = F.cross_entropy(logits, y)
    if aux is not None:
        aux_loss = F.cross_entropy(aux, y)
        module.log("train/aux_loss", aux_loss)
        loss = loss + weight * aux_loss
    return loss, logits
