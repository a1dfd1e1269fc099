"""ENAS's recurrent cell search on a language model, and the stand-alone language model that
retrains a derived cell (`model=lm_standalone`)."""

from nas.methods.enas_rnn.lm import StandaloneLMModule
from nas.methods.enas_rnn.module import ENASRNNModule

__all__ = ["ENASRNNModule", "StandaloneLMModule"]
