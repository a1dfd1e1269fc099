"""Few-shot NAS (Zhao et al., ICML 2021): sub-supernets split from a trained one, and the search that
routes every architecture to the sub-supernet holding it."""

from nas.methods.fewshot.module import FewShotModule, SplitSampler

__all__ = ["FewShotModule", "SplitSampler"]
