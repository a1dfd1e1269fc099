"""Per-step path weights of the supernet: one module per sampler, each found and registered here.

`path_dropout` (Bender et al.), `uniform` (SPOS), `fair` (FairNAS). A new sampler is a new module
defining a `Sampler` subclass with a `name`, and a YAML file in `conf/sampler/`.
"""

from __future__ import annotations

import importlib
import pkgutil

from nas.samplers.base import SAMPLERS, Sampler, build_sampler

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

from nas.samplers.fair import FairSampler  # noqa: E402
from nas.samplers.path_dropout import PathDropout  # noqa: E402
from nas.samplers.uniform import UniformSampler  # noqa: E402

__all__ = ["SAMPLERS", "FairSampler", "PathDropout", "Sampler", "UniformSampler", "build_sampler"]
