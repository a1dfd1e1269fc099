"""ENAS (Pham et al., ICML 2018) on image spaces: the module, its controller, REINFORCE, the
controller as a search strategy (`strategy=controller`), and the final training of one architecture."""

from nas.methods.enas.final import EnasFinalModule
from nas.methods.enas.module import ControllerSampler, ENASModule

__all__ = ["ControllerSampler", "ENASModule", "EnasFinalModule"]
