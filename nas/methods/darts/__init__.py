"""DARTS (Liu et al., ICLR 2019): architecture parameters α trained beside the supernet (shared with
GDAS), and the evaluation network that retrains a derived cell (`model=darts_eval`)."""

from nas.methods.darts.eval_module import DartsEvalModule
from nas.methods.darts.module import DARTSModule

__all__ = ["DARTSModule", "DartsEvalModule"]
