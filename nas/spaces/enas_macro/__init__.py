"""The ENAS macro search space (Pham et al., ICML 2018) and its supernet and stand-alone networks."""

from nas.spaces.base import register_space
from nas.spaces.enas_macro.network import EnasMacroChild, EnasMacroSupernet, pool_layers
from nas.spaces.enas_macro.space import MACRO_OPS, EnasMacroSpace

register_space(EnasMacroSpace, EnasMacroSupernet, EnasMacroChild)

__all__ = ["MACRO_OPS", "EnasMacroChild", "EnasMacroSpace", "EnasMacroSupernet", "pool_layers"]
