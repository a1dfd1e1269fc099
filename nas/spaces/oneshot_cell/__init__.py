"""The cell search space of Bender et al. (ICML 2018) and its supernet and stand-alone networks."""

from nas.spaces.base import register_space
from nas.spaces.oneshot_cell.network import ChildNet, OneShotSupernet
from nas.spaces.oneshot_cell.space import PAPER_OPS, OneShotCellSpace

register_space(OneShotCellSpace, OneShotSupernet, ChildNet)

__all__ = ["PAPER_OPS", "ChildNet", "OneShotCellSpace", "OneShotSupernet"]
