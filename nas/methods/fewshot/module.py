"""Few-shot NAS (Zhao et al., "Few-shot Neural Architecture Search", ICML 2021): split a supernet.

A trained one-shot supernet (the parent) is split on one decision whose architectures choose exactly
one option (e.g. an edge of NAS-Bench-201): one sub-supernet per option. Each starts from the parent's
weights and trains further on only the architectures that take its option, drawn by any sampler of
`sampler/` with the split decision's column fixed to that option (`SplitSampler`). Search scores an
architecture with the sub-supernet that contains it (`nas/methods/fewshot/routing.py`): a search
given the directory of their runs restores them all and `FewShotModule.searched_together` groups
them into one scorer.

Train the sub-supernets as a sweep over `model.option`, one job each, into one directory:
    python train.py -m experiment=quickstart_fewshot model.parent=<run>/checkpoints/last.ckpt \
        model.option=none,skip_connect,nor_conv_1x1,nor_conv_3x3,avg_pool_3x3 hydra.sweep.dir=<dir>
    python search.py experiment=quickstart_fewshot ckpt=<dir>
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from nas.errors import NasError, check
from nas.methods.fewshot.routing import SubSupernets
from nas.modules.supernet import OneShotModule
from nas.samplers.base import LossTerms, Sampler, build_sampler
from nas.search.checkpoint import load_supernet_module
from nas.spaces import SearchSpace, Weights, build_space
from nas.spaces.interface import network_of


class SplitSampler(Sampler):
    """The wrapped sampler's path weights with decision `split` fixed to `option` in every row.

    Every other column is left as the wrapped sampler drew it; its generator draws are unchanged.
    """

    name = "split"

    def __init__(self, split: str, option: str, sampler: Sampler | Mapping | None = None):
        self.split, self.option = str(split), str(option)
        self.sampler = build_sampler(sampler)

    def check_space(self, space: SearchSpace) -> None:
        names = [d.name for d in space.decisions]
        check(
            self.split in names,
            f"model.split={self.split!r} is not a decision of search space {space.name!r}; "
            f"its decisions: {names}",
        )
        d = space.decision(self.split)
        check(
            d.min_k == d.max_k == 1,
            f"model.split={self.split!r}: few-shot NAS splits a decision that chooses exactly one "
            f"option (min_k == max_k == 1), one sub-supernet per option; decision {d.name!r} "
            f"chooses min_k={d.min_k} to max_k={d.max_k} of {list(d.options)}. Split another "
            "decision (e.g. an edge of search_space=nb201)",
        )
        check(
            self.option in d.options,
            f"model.option={self.option!r} is not an option of decision {d.name!r}; "
            f"its options: {list(d.options)}",
        )
        self.sampler.check_space(space)

    def _fix(self, space: SearchSpace, weights: Weights) -> Weights:
        d = space.decision(self.split)
        column = weights[self.split]
        onehot = torch.zeros_like(column)
        onehot[:, d.options.index(self.option)] = 1
        return {**weights, self.split: onehot}

    def sample(
        self, space: SearchSpace, ghosts: int, progress: float, generator: torch.Generator
    ) -> Weights:
        return self._fix(space, self.sampler.sample(space, ghosts, progress, generator))

    def eval_weights(self, space: SearchSpace, ghosts: int, batch_idx: int) -> Weights:
        weights = self.sampler.eval_weights(space, ghosts, batch_idx)
        if weights is None:  # all-on: every path, except the split decision's other options
            weights = space.full_masks(ghosts)
        return self._fix(space, weights)

    def copies(self, space: SearchSpace) -> int:
        return self.sampler.copies(space)

    def loss_terms(self, space: SearchSpace, weights: Weights) -> LossTerms:
        return self.sampler.loss_terms(space, weights)  # e.g. FairNAS's sum of its m models

    def metrics(self, progress: float) -> dict[str, float]:
        return self.sampler.metrics(progress)

    def spec(self) -> dict:
        return {
            "name": self.name,
            "split": self.split,
            "option": self.option,
            "sampler": self.sampler.spec(),
        }


class FewShotModule(OneShotModule):
    """One sub-supernet: the parent supernet's weights, trained on the architectures whose decision
    `split` takes `option` (any sampler, restricted by `SplitSampler`)."""

    method = "fewshot"

    def __init__(
        self,
        space: SearchSpace | Mapping,
        parent: str,
        split: str,
        option: str,
        sampler: Sampler | Mapping | None = None,
        load_parent: bool = True,
        **kwargs,
    ):
        """kwargs: the supernet's settings (`OneShotModule`), those of the parent's network."""
        settings = self.supernet_settings(kwargs)
        space = build_space(space)
        inner = build_sampler(sampler)
        if isinstance(inner, SplitSampler):  # rebuilt from a checkpoint: its spec is the split one
            check(
                (inner.split, inner.option) == (str(split), str(option)),
                f"sampler splits {inner.split!r} on {inner.option!r}, but model.split={split!r} "
                f"and model.option={option!r}",
            )
            inner = inner.sampler
        super().__init__(space, SplitSampler(split, option, inner), **settings)
        # parent, split and option stay in the hyperparameters: the checkpoint rebuilds this module
        self.hparams.pop("load_parent", None)
        self.hparams["split"], self.hparams["option"] = str(split), str(option)
        if load_parent:  # off when a checkpoint's own weights are loaded next
            parent = str(Path(str(parent)).expanduser().resolve())
            self.supernet.load_state_dict(self._parent_state(parent))
        self.hparams["parent"] = str(parent)  # where the weights came from (not needed to reload)

    @classmethod
    def restore_arguments(cls, hparams) -> dict:
        # its own trained weights are loaded next: the parent's are not needed (nor must it exist)
        return {**super().restore_arguments(hparams), "load_parent": False}

    @classmethod
    def searched_together(cls, modules, names):
        """The sub-supernets of one split, each architecture scored by the one holding it."""
        return SubSupernets(modules, names)

    def _parent_state(self, parent: str) -> dict[str, torch.Tensor]:
        """The parent's supernet weights, after checking it is a supernet of this space and network."""
        check(
            Path(parent).expanduser().is_file(),
            f"model.parent={parent!r} does not exist; pass the supernet checkpoint to split, e.g. "
            "<run>/checkpoints/last.ckpt written by `train.py experiment=quickstart_nb201`",
        )
        module = load_supernet_module(parent, torch.device("cpu"))
        if isinstance(module, FewShotModule):
            h = module.hparams
            raise NasError(
                f"model.parent={parent!r} is itself a sub-supernet (decision {h.split!r} fixed "
                f"to {h.option!r}); split a one-shot supernet"
            )
        check(
            module.space.fingerprint == self.space.fingerprint,
            f"model.parent={parent!r} was trained on search space {module.space.spec()} "
            f"(fingerprint {module.space.fingerprint}), but this run's is {self.space.spec()} "
            f"(fingerprint {self.space.fingerprint}); pass the parent's search_space",
        )
        theirs, ours = network_of(module.hparams), network_of(self.hparams)
        check(
            theirs == ours,
            f"model.parent={parent!r} has network {theirs}, but this run's is {ours}; pass the "
            "parent's model.filters/cells/stages and its dataset",
        )
        return module.supernet.state_dict()
