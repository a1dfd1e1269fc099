"""Zero-cost proxies: scores of an untrained stand-alone network, by name (`proxy=<name>`).

One file per proxy, each registering itself (`register_proxy`); importing this package imports them
all. A proxy scores the child of one architecture at initialisation (`nas.proxies.scoring`), on a
stated batch of training images where it needs data; higher always means "predicted better".
"""

from __future__ import annotations

import importlib
import pkgutil

from nas.proxies.base import PROXIES, Proxy, proxy_named, register_proxy

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"base", "scoring"}:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["PROXIES", "Proxy", "proxy_named", "register_proxy"]
