"""The cell search space of Bender et al. (ICML 2018): 4 choice blocks, each choosing inputs and ops.

Choice block i may take any non-empty subset of its 2 + i candidate inputs (the two previous cells and
blocks 0..i-1 of the same cell) and 1 or 2 of the 7 ops. All cells share one architecture.
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.errors import check
from nas.ops import OPS
from nas.spaces.base import Decision, SearchSpace

PAPER_OPS = ("identity", "sep3x3", "sep5x5", "sep7x7", "conv1x7_7x1", "maxpool3x3", "avgpool3x3")
CELL_INPUTS = ("prev_prev", "prev")  # outputs of cell k-2 and cell k-1


def block_inputs(block: int) -> tuple[str, ...]:
    """Candidate input names of choice block `block`."""
    return CELL_INPUTS + tuple(f"block{j}" for j in range(block))


class OneShotCellSpace(SearchSpace):
    """Decisions `block{i}/inputs` (1..2+i of 2+i) and `block{i}/ops` (min_ops..max_ops of the ops)."""

    name = "oneshot_cell"

    def __init__(
        self,
        num_blocks: int = 4,
        ops: Sequence[str] = PAPER_OPS,
        min_ops: int = 1,
        max_ops: int = 2,
    ):
        check(
            isinstance(num_blocks, int) and num_blocks >= 1,
            f"search_space.num_blocks={num_blocks!r} must be an integer >= 1 (the paper uses 4)",
        )
        ops = tuple(ops)
        unknown = [o for o in ops if o not in OPS]
        check(
            not unknown, f"search_space.ops has unknown op(s) {unknown}; known ops: {sorted(OPS)}"
        )
        check(
            len(ops) >= 1,
            "search_space.ops is empty; list at least one op, e.g. [identity, sep3x3]",
        )
        check(
            1 <= min_ops <= max_ops <= len(ops),
            f"search_space: need 1 <= min_ops <= max_ops <= {len(ops)} ops, got min_ops={min_ops}, max_ops={max_ops}",
        )
        self.num_blocks, self.ops, self.min_ops, self.max_ops = num_blocks, ops, min_ops, max_ops
        decisions = []
        for i in range(num_blocks):
            decisions.append(Decision(f"block{i}/inputs", block_inputs(i), min_k=1))
            decisions.append(Decision(f"block{i}/ops", ops, min_k=min_ops, max_k=max_ops))
        super().__init__(decisions)

    def spec(self) -> dict:
        return {
            "name": self.name,
            "num_blocks": self.num_blocks,
            "ops": list(self.ops),
            "min_ops": self.min_ops,
            "max_ops": self.max_ops,
        }
