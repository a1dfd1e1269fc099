"""Ghost batch norm: statistics per ghost batch, at training *and* evaluation time.

The batch of N examples is cut into consecutive ghost batches of `ghost_size` (the last one may be
smaller when N is not a multiple). Each ghost batch is normalised with its own mean and variance, as if
it had been run alone; no running averages are used (the paper's rule for the one-shot model: a
candidate's statistics are unknown in advance, so they are computed on the fly).
"""

from __future__ import annotations

import torch
from torch import nn


def num_ghosts(batch: int, ghost_size: int | tuple[int, ...] | None) -> int:
    """Number of ghost batches a batch of `batch` examples is cut into."""
    return len(ghost_sizes(batch, ghost_size))


def ghost_sizes(batch: int, ghost_size: int | tuple[int, ...] | None) -> list[int]:
    """Sizes of the consecutive ghost batches (all `ghost_size` but perhaps the last, or as given)."""
    if isinstance(ghost_size, tuple | list):
        if sum(ghost_size) != batch:
            raise ValueError(
                f"ghost batch sizes {ghost_size} do not add up to the batch of {batch}"
            )
        return list(ghost_size)
    if ghost_size is None or ghost_size >= batch:
        return [batch]
    full, rest = divmod(batch, ghost_size)
    return [ghost_size] * full + ([rest] if rest else [])


def per_example(rows: torch.Tensor, batch: int, ghost_size: int | None) -> torch.Tensor:
    """Expand per-ghost-batch rows [G, ...] to per-example rows [batch, ...] (G = 1 broadcasts)."""
    if rows.shape[0] == 1:
        return rows.expand(batch, *rows.shape[1:])
    sizes = ghost_sizes(batch, ghost_size)
    if len(set(sizes)) == 1:
        return rows.repeat_interleave(sizes[0], dim=0)
    return rows.repeat_interleave(torch.tensor(sizes, device=rows.device), dim=0)


class GhostBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that normalises each ghost batch with its own statistics.

    `forward(x, ghost_size)`: with an int, statistics per ghost batch (always batch statistics, even in
    eval mode); with None, exactly `nn.BatchNorm2d` (used by stand-alone networks).
    """

    def forward(
        self, x: torch.Tensor, ghost_size: int | tuple[int, ...] | None = None
    ) -> torch.Tensor:  # type: ignore[override]
        if ghost_size is None:
            return super().forward(x)
        n, c = x.shape[:2]
        sizes = ghost_sizes(n, ghost_size)
        xf = (
            x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        )  # float32 stats under autocast
        if len(set(sizes)) == 1:
            g = xf.view(len(sizes), sizes[0], c, -1)
            var, mean = torch.var_mean(g, dim=(1, 3), keepdim=True, correction=0)
            y = ((g - mean) * torch.rsqrt(var + self.eps)).view_as(xf)
        else:  # unequal ghost batches: per-ghost sums by segment (two passes, centred variance)
            ghost_of = torch.repeat_interleave(
                torch.arange(len(sizes), device=x.device), torch.tensor(sizes, device=x.device)
            )
            count = (
                torch.tensor(sizes, device=x.device, dtype=xf.dtype).view(-1, 1) * xf[0, 0].numel()
            )
            zeros = xf.new_zeros(len(sizes), c)
            mean = zeros.index_add(0, ghost_of, xf.sum(dim=(2, 3))) / count
            centred = xf - mean[ghost_of].view(n, c, 1, 1)
            var = zeros.index_add(0, ghost_of, centred.square().sum(dim=(2, 3))) / count
            y = centred * torch.rsqrt(var + self.eps)[ghost_of].view(n, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y.to(x.dtype)
