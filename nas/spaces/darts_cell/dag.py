"""The vocabulary of the darts_cell DAG that the space, its networks and the genotype text share.

A cell has two inputs (`INPUTS`: h-1 and h-2) and intermediate nodes 0, 1, ...; an edge "j<-i" feeds
node j from node i. Kept apart from `space.py` so that `genotype.py` (which the space uses) need not
import the space.
"""

from __future__ import annotations

NAME = "darts_cell"  # the space's registered name
CELLS = ("normal", "reduce")
INPUTS = ("in0", "in1")  # h-1 and h-2


def parse_edge(edge: str) -> tuple[str, int]:
    """("in0" / "in1" / "i", j) of an edge "j<-i" (unchecked against a node count)."""
    target, _, source = edge.partition("<-")
    return source, int(target)
