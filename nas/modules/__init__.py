"""LightningModules every method shares: the method protocol, the supernet base (Bender et al.'s
one-shot method) and the stand-alone child."""

from nas.modules.child import StandaloneModule
from nas.modules.method import MethodModule
from nas.modules.supernet import OneShotModule

__all__ = ["MethodModule", "OneShotModule", "StandaloneModule"]
