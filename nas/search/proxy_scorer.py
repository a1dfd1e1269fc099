"""A proxy search: `python search.py experiment=<exp> strategy=proxy proxy=<name>` scores every
proposed architecture with a zero-cost proxy (`nas.proxies`) instead of a supernet's shared weights.

`ProxyScorer` stands where a search has a trained module (the method protocol's `space`,
`hparams`, `eval_ghost_size` and `scorer`) and is the scorer the search driver calls in place of
the one-shot evaluator: each architecture's stand-alone child is built at initialisation from the
proxy's seed and scored on one fixed batch of training images (`proxy.images`, drawn with
`proxy.seed`). The store it fills is an ordinary results store (scores in `oneshot_acc`, higher
predicts better for every proxy), so `nas.quality`, selections, retraining and the method comparison
read it unchanged. Its evaluation setup records the proxy, its batch and seed and the network; the
proxy's own seconds are kept in the store's `proxy_cost` metadata.

The space and network come from `ckpt=` when one is given (its trained weights are not used), else
from the experiment's config (`search_space`, `model.filters/cells/stages`). Architectures are
proposed by random sampling (`ProxySearch`): with the same `search.seed` the same stream as
`strategy=random`, so a proxy's store holds the architectures a supernet's random search scored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from lightning.fabric.utilities.data import AttributeDict
from omegaconf import OmegaConf

from nas.data.base import in_memory_split
from nas.errors import NasError, check
from nas.proxies import proxy_named
from nas.proxies.scoring import proxy_score
from nas.results.complexity import SizeTable
from nas.search.checkpoint import run_dir_of
from nas.search.strategies import RandomSearch
from nas.spaces.base import Architecture, SearchSpace
from nas.spaces.interface import NETWORK_KEYS, network_of

# Stored for an architecture whose proxy is undefined (NaN, or -inf: e.g. a cell with no path from
# input to output has identical Jacobians and a singular NASWOT kernel): below every score the
# registered proxies give, finite so that strategies and rank statistics take it; they rank last.
UNDEFINED = -1e100
COST = "proxy_cost"  # store metadata: architectures timed and the proxy's seconds over them


class ProxySearch(RandomSearch):
    """Random search, named `proxy` (results in `proxy-<name>-seed<seed>/`); ignores scores."""

    name = "proxy"


def proxy_search_dir(ckpt: str | None, experiment: str | None) -> str:
    """Where a proxy search's results folder goes: beside the checkpoint's run (`<run>/search`),
    or, without one, `outputs/search/<experiment>`."""
    if ckpt:
        return f"{run_dir_of(ckpt)}/search"
    return f"outputs/search/{experiment or 'default'}"


OmegaConf.register_new_resolver("proxy_search_dir", proxy_search_dir, replace=True)


def proxy_batch(datamodule, images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`images` un-augmented, normalised training images and their labels, chosen by `seed` (the
    permutation `nas.data.base.fixed_train_examples` draws)."""
    split = in_memory_split(datamodule, "train", "a proxy search")
    check(
        isinstance(images, int) and 2 <= images <= len(split),
        f"proxy.images={images!r} must be an integer in 2..{len(split)} (the training split's "
        "size; Jacobian covariance and NASWOT compare images with each other)",
    )
    check(
        split.images.dim() == 4,
        f"proxies score image classifiers, but the dataset's examples have shape "
        f"{list(split.images.shape[1:])}; use an image dataset and space",
    )
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:images]
    return datamodule.normalize(split.images[order]), split.labels[order]


class ProxyScorer:
    """Scores architectures with one proxy; answers what a search asks a trained module."""

    def __init__(
        self,
        proxy: str,
        space: SearchSpace,
        network: Mapping,
        images: torch.Tensor,
        labels: torch.Tensor,
        seed: int,
    ):
        self.proxy = proxy_named(proxy)
        self.space, self.network = space, dict(network)
        self.hparams = AttributeDict(self.network)  # as a module's: num_classes, in_channels, ...
        self.images, self.labels, self.seed = images, labels, seed
        self.eval_ghost_size = len(images)  # batch norm: statistics of the whole batch
        self.sizes = SizeTable(space, self.network, tuple(images.shape[1:]))
        self.timed, self.seconds = 0, 0.0
        # what its scores mean beyond the dataset (nas.search.setup): the proxy, batch and network
        self.setup = {
            "proxy": {"name": proxy, "images": len(images), "seed": seed},
            "network": self.network,
        }

    def scorer(self, evaluator_of) -> ProxyScorer:
        """The method protocol's scorer: itself (no supernet, so `evaluator_of` is not used)."""
        return self

    def __call__(self, archs: Sequence[Architecture]) -> list[dict]:
        rows = []
        for arch in archs:
            value, seconds = proxy_score(
                self.proxy, arch, self.network, self.images, self.labels, self.seed
            )
            self.timed, self.seconds = self.timed + 1, self.seconds + seconds
            params, macs = self.sizes(arch)
            rows.append(
                {
                    "oneshot_acc": self._storable(arch, value),
                    "params": params,
                    "macs": macs,
                    "eval_batch_size": len(self.images),
                    "eval_ghost_size": len(self.images),
                }
            )
        return rows

    def _storable(self, arch: Architecture, value: float) -> float:
        check(
            value != math.inf,
            f"proxy {self.proxy.name} overflowed to +inf for architecture {arch.id}; its scores "
            "are not comparable on this network: use a smaller network (model.filters, "
            "model.cells) or another proxy",
        )
        if not math.isfinite(value):
            return UNDEFINED
        check(
            value > UNDEFINED,
            f"proxy {self.proxy.name} scored architecture {arch.id} {value!r}, at or below the "
            f"value stored for undefined scores ({UNDEFINED:g}); it cannot be stored apart from them",
        )
        return value

    def record_cost(self, store) -> str:
        """Add this run's timings to the store's `proxy_cost`; the summary line saying them."""
        before = store.get_meta(COST) or {"archs": 0, "seconds": 0.0}
        cost = {
            "proxy": self.proxy.name,
            "archs": before["archs"] + self.timed,
            "seconds": before["seconds"] + self.seconds,
        }
        store.set_meta(COST, cost)
        per_arch = 1000 * cost["seconds"] / max(cost["archs"], 1)
        return (
            f"proxy {self.proxy.name}: {per_arch:.1f} ms per architecture (the proxy's own "
            f"computation on {len(self.images)} image(s), mean over {cost['archs']} timed; "
            "building each child not included)"
        )


def proxy_subject(
    proxy: Mapping, module, cfg, datamodule, device: torch.device
) -> tuple[ProxyScorer, str]:
    """The `ProxyScorer` of search.py's config, and a line saying where its network comes from:
    `module` (restored from `ckpt=`, its weights unused) or, when None, the experiment's config."""
    recalibration = cfg.search.get("bn_recalibration_batches")
    check(
        not recalibration,
        f"search.bn_recalibration_batches={recalibration!r}: a proxy search scores untrained "
        "children, with no shared weights to recalibrate; drop it",
    )
    if module is not None:
        space, network = module.space, network_of(module.hparams)
        source = (
            f"the space and network of {cfg.ckpt} (its trained weights are not used: each child "
            "is scored at initialisation)"
        )
    else:
        space = _space_of(OmegaConf.to_container(cfg.search_space, resolve=True))
        network = _network_of(OmegaConf.to_container(cfg.model, resolve=True))
        network["num_classes"] = datamodule.num_classes
        network["in_channels"] = datamodule.in_channels
        source = "the space and network of the experiment's config (no checkpoint)"
    images, labels = proxy_batch(datamodule, proxy["images"], proxy["seed"])
    scorer = ProxyScorer(
        proxy["name"], space, network, images.to(device), labels.to(device), proxy["seed"]
    )
    return scorer, f"proxy {proxy['name']} scores {source}"


def _space_of(search_space: Mapping) -> SearchSpace:
    from hydra.utils import instantiate

    from nas.config import check_settings

    check_settings(search_space, "search_space")
    return instantiate(search_space)


def _network_of(model: Mapping) -> dict:
    """The network settings of the `model` group that are not the dataset's (filters, ...)."""
    network = {}
    for key in NETWORK_KEYS:
        if key in ("num_classes", "in_channels"):
            continue
        value = model.get(key)
        check(
            isinstance(value, int),
            f"model.{key}={value!r}: a proxy search without ckpt= builds the children from the "
            f"experiment's model settings; set model.{key} or pass ckpt=<run>/checkpoints/last.ckpt",
        )
        network[key] = value
    return network


def refuse_missing_checkpoint(ckpt, proxy) -> None:
    """A search without a checkpoint scores nothing unless a proxy does the scoring."""
    if ckpt is None and proxy is None:
        raise NasError(
            "ckpt=null: search.py scores a trained supernet; pass ckpt=<run>/checkpoints/last.ckpt "
            "(only strategy=proxy scores without one)"
        )
