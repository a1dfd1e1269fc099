"""Ghost batch norm: statistics per ghost batch, at training *and* evaluation time.

The batch of N examples is cut into consecutive ghost batches of `ghost_size` (the last one may be
smaller when N is not a multiple). Each ghost batch is normalised with its own mean and variance, as if
it had been run alone; no running averages are used (the paper's rule for the one-shot model: a
candidate's statistics are unknown in advance, so they are computed on the fly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def per_example(
    rows: torch.Tensor, batch: int, ghost_size: int | tuple[int, ...] | None
) -> torch.Tensor:
    """Expand per-ghost-batch rows [G, ...] to per-example rows [batch, ...] (G = 1 broadcasts)."""
    if rows.shape[0] == 1:
        return rows.expand(batch, *rows.shape[1:])
    sizes = ghost_sizes(batch, ghost_size)
    if len(set(sizes)) == 1:
        return rows.repeat_interleave(sizes[0], dim=0)
    return rows.repeat_interleave(torch.tensor(sizes, device=rows.device), dim=0)


# How ghost batches of equal size get their statistics, per device type. All give the same result
# (to ~1e-6 in float32); `benchmarks/throughput.py` measures them (docs/benchmarks.md). On the CPU
# torch's own kernel over ghost batches laid side by side as channels was fastest, training and
# ranking alike; CUDA keeps the strided view (fewest kernels) until the GPU table says otherwise.
EQUAL_SIZE_METHOD = {"cpu": "transposed", "cuda": "var_mean"}
EQUAL_SIZE_METHODS = ("transposed", "var_mean", "segment")
METHODS = ("native", *EQUAL_SIZE_METHODS)


def ghost_normalize(
    x: torch.Tensor,
    sizes: list[int],
    eps: float,
    method: str | None = None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """x [N, C, H, W] normalised per consecutive ghost batch of `sizes`, then scaled by `weight` and
    shifted by `bias` [C] if given; statistics in float32 at least, the result in x's dtype.

    method: "native" (one ghost batch: torch's own batch-norm kernel), "transposed" (equal ghost
    batches side by side as channels, [n, G*C, H, W], through torch's kernel), "var_mean" (a strided
    view of equal ghost batches) or "segment" (per-ghost sums by index; any sizes); None picks the
    fastest valid one for the device.
    """
    n, c = x.shape[:2]
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # float32 stats (autocast)
    g, equal = len(sizes), len(set(sizes)) == 1
    if method is None and not equal and len(set(sizes[:-1])) == 1:
        # equal ghost batches and a smaller last one (a validation split that does not divide):
        # the fast equal-size method for the head, torch's kernel for the tail
        head = n - sizes[-1]
        return torch.cat(
            [
                ghost_normalize(x[:head], sizes[:-1], eps, None, weight, bias),
                ghost_normalize(x[head:], sizes[-1:], eps, None, weight, bias),
            ]
        )
    if method is None:
        method = "native" if g == 1 else "segment"
        if equal and g > 1:
            method = EQUAL_SIZE_METHOD.get(x.device.type, "var_mean")
    if method == "native" and g == 1:  # the affine fused into the kernel
        return F.batch_norm(xf, None, None, weight, bias, True, 0.0, eps).to(x.dtype)
    if method == "transposed" and equal and xf.dim() == 4:
        return _side_by_side(xf, g, eps, weight, bias).to(x.dtype)
    if method in ("var_mean", "native") and equal:
        grouped = xf.view(g, sizes[0], c, -1)
        var, mean = torch.var_mean(grouped, dim=(1, 3), keepdim=True, correction=0)
        y = ((grouped - mean) * torch.rsqrt(var + eps)).view_as(xf)
    else:  # per-ghost sums by segment (two passes, centred variance)
        ghost_of = torch.repeat_interleave(
            torch.arange(g, device=x.device), torch.tensor(sizes, device=x.device)
        )
        count = torch.tensor(sizes, device=x.device, dtype=xf.dtype).view(-1, 1) * xf[0, 0].numel()
        zeros = xf.new_zeros(g, c)
        mean = zeros.index_add(0, ghost_of, xf.sum(dim=(2, 3))) / count
        centred = xf - mean[ghost_of].view(n, c, 1, 1)
        var = zeros.index_add(0, ghost_of, centred.square().sum(dim=(2, 3))) / count
        y = centred * torch.rsqrt(var + eps)[ghost_of].view(n, c, 1, 1)
    if weight is not None:
        y = y * weight.view(1, c, 1, 1) + bias.view(1, c, 1, 1)
    return y.to(x.dtype)


def _side_by_side(xf, g: int, eps: float, weight, bias) -> torch.Tensor:
    """Equal ghost batches laid side by side as channels, [m, g*C, H, W], through torch's kernel.

    NCHW input: two transposing copies, NCHW out. Channels-last input: the same two copies in NHWC,
    so the result stays channels-last for the next convolution.
    """
    n, c, h, w = xf.shape
    m = n // g
    gw, gb = (None if t is None else t.repeat(g) for t in (weight, bias))
    if xf.is_contiguous() or not xf.is_contiguous(memory_format=torch.channels_last):
        side = xf.reshape(g, m, c, h, w).transpose(0, 1).reshape(m, g * c, h, w)
        y = F.batch_norm(side, None, None, gw, gb, True, 0.0, eps)
        return y.view(m, g, c, h, w).transpose(0, 1).reshape(n, c, h, w)
    nhwc = xf.permute(0, 2, 3, 1)  # [N, H, W, C], contiguous
    side = nhwc.reshape(g, m, h, w, c).permute(1, 2, 3, 0, 4).reshape(m, h, w, g * c)
    y = F.batch_norm(side.permute(0, 3, 1, 2), None, None, gw, gb, True, 0.0, eps)
    back = y.permute(0, 2, 3, 1).reshape(m, h, w, g, c).permute(3, 0, 1, 2, 4)
    return back.reshape(n, h, w, c).permute(0, 3, 1, 2)


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
        sizes = ghost_sizes(x.shape[0], ghost_size)
        return ghost_normalize(x, sizes, self.eps, weight=self.weight, bias=self.bias)
