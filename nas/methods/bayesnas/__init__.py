"""BayesNAS (Zhou et al., ICML 2019): ARD switches on a supernet's paths, the hierarchical prior,
its figure, and Bayesian network compression (`model=bayes_compress`)."""

from nas.methods.bayesnas.compress import BayesCompressionModule
from nas.methods.bayesnas.module import BayesNASModule

__all__ = ["BayesCompressionModule", "BayesNASModule"]
