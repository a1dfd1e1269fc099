"""The ENAS recurrent cell search space (Pham et al., ICML 2018) and its language-model networks."""

from nas.spaces.base import register_space
from nas.spaces.enas_rnn.network import EnasRnnChild, EnasRnnSupernet, lm_size
from nas.spaces.enas_rnn.space import ACTIVATIONS, EnasRnnSpace, chosen_input, loose_ends

register_space(EnasRnnSpace, EnasRnnSupernet, EnasRnnChild)

__all__ = [
    "ACTIVATIONS",
    "EnasRnnChild",
    "EnasRnnSpace",
    "EnasRnnSupernet",
    "chosen_input",
    "lm_size",
    "loose_ends",
]
