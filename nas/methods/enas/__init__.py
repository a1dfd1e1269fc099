"""ENAS (Pham et al., ICML 2018) on image spaces: the module, its controller, REINFORCE, and the
controller as a search strategy (`strategy=controller`)."""

from nas.methods.enas.module import ControllerSampler, ENASModule

__all__ = ["ControllerSampler", "ENASModule"]
