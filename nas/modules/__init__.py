"""LightningModules: the one-shot supernet and stand-alone children."""

from nas.modules.child import StandaloneModule
from nas.modules.supernet import OneShotModule

__all__ = ["OneShotModule", "StandaloneModule"]
