"""The ENAS macro search space (Pham et al., ICML 2018) and its supernet and stand-alone networks."""

from nas.spaces.base import register_space
from nas.spaces.enas_macro.network import EnasMacroChild, EnasMacroSupernet, pool_layers
from nas.spaces.enas_macro.space import (
    AUTHORS_MACRO_OPS,
    MACRO_OPS,
    WIRINGS,
    EnasMacroSpace,
    format_arc,
    parse_arc,
)

register_space(EnasMacroSpace, EnasMacroSupernet, EnasMacroChild)

__all__ = [
    "AUTHORS_MACRO_OPS",
    "MACRO_OPS",
    "WIRINGS",
    "EnasMacroChild",
    "EnasMacroSpace",
    "EnasMacroSupernet",
    "format_arc",
    "parse_arc",
    "pool_layers",
]
