"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020) and its supernet and stand-alone networks."""

from nas.spaces.base import register_space
from nas.spaces.nb201.network import NB201Child, NB201Supernet
from nas.spaces.nb201.space import EDGES, NB201_OPS, NB201Space

register_space(NB201Space, NB201Supernet, NB201Child)

__all__ = ["EDGES", "NB201_OPS", "NB201Child", "NB201Space", "NB201Supernet"]
