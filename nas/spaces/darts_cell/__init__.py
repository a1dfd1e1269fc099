"""A DARTS-like cell space with a configurable DAG (BayesNAS's and DARTS's cells) and its networks."""

from nas.spaces.base import register_space
from nas.spaces.darts_cell.network import DartsCellChild, DartsCellSupernet
from nas.spaces.darts_cell.space import (
    BAYESNAS_EDGES,
    BAYESNAS_OPS,
    DARTS_EDGES,
    NETWORKS,
    DartsCellSpace,
    dense_edges,
)

register_space(DartsCellSpace, DartsCellSupernet, DartsCellChild)

__all__ = [
    "BAYESNAS_EDGES",
    "BAYESNAS_OPS",
    "DARTS_EDGES",
    "NETWORKS",
    "DartsCellChild",
    "DartsCellSpace",
    "DartsCellSupernet",
    "dense_edges",
]
