"""ChildNet: a plain stand-alone network holding only one architecture's chosen inputs and ops."""

from __future__ import annotations

import torch

from nas.errors import check
from nas.spaces.base import Architecture
from nas.supernet import CellNetwork


class ChildNet(CellNetwork):
    """The cell network of `arch` with ordinary batch norm; unused paths do not exist."""

    def __init__(
        self,
        arch: Architecture,
        filters: int = 16,
        cells: int = 6,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        space = arch.space
        check(
            hasattr(space, "num_blocks"),
            f"ChildNet needs an architecture of the oneshot_cell space, got {space.name!r}",
        )
        blocks = [
            (arch[f"block{i}/inputs"], arch[f"block{i}/ops"]) for i in range(space.num_blocks)
        ]
        super().__init__(space, blocks, False, filters, cells, stages, num_classes, in_channels)
        self.arch = arch

    def forward(self, x: torch.Tensor, ghost_size: int | None = None) -> torch.Tensor:
        return super().forward(x, ghost_size)
