"""GDAS (Dong & Yang, CVPR 2019): one Gumbel-sampled path per edge, α shared with DARTS's module."""

from nas.methods.gdas.module import GDASModule

__all__ = ["GDASModule"]
