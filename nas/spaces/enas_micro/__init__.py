"""The ENAS micro (cell) search space (Pham et al., ICML 2018) and its supernet and stand-alone networks."""

from nas.spaces.base import register_space
from nas.spaces.enas_micro.network import EnasMicroChild, EnasMicroSupernet
from nas.spaces.enas_micro.space import MICRO_OPS, EnasMicroSpace, loose_ends

register_space(EnasMicroSpace, EnasMicroSupernet, EnasMicroChild)

__all__ = ["MICRO_OPS", "EnasMicroChild", "EnasMicroSpace", "EnasMicroSupernet", "loose_ends"]
