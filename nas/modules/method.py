"""The method protocol: what train.py, search.py and checkpoints ask of a method's training module.

A method (Bender's one-shot, ENAS, DARTS, few-shot, ...) is one LightningModule class that mixes in
`MethodModule`; it lives in its package `nas/methods/<name>/` (or anywhere importable: a class in a
user's own package works the same) and registers itself by its `method` name. The shared code asks
these questions, and nothing else, of it; it never names a method or reads its constructor:

- what train.py builds for it beside its own settings (`inputs`: the `search_space` group, the
  `sampler` group; stand-alone modules, which are not methods, take `arch` instead);
- what it learns outside the trainer's optimizer step (`learned_outside_trainer`: DDP leaves those
  parameters alone and the method keeps them equal on every process itself, `nas.distributed`);
- what it derives itself at the end of training (`derives`: the folder under `<run>/search/` it
  writes an architecture to, as a search writes one; None: `search.py` derives);
- whether and how a checkpoint of it is scored by a search (`check_searchable`: e.g. the recurrent
  ENAS module refuses, with its own message), how it is restored with its trained weights
  (`restore`, `restore_arguments`: e.g. few-shot does not load its parent's weights again);
- which scorer a search uses with it (`searched_together` and `scorer`): the plain one-shot
  evaluator of its supernet (per-ghost-batch BN statistics, or re-estimated ones with
  `search.bn_recalibration_batches`), or, for a group of checkpoints searched as one (few-shot's
  sub-supernets), an evaluator routing each architecture to the module that holds it.

Checkpoints record the class (`module_class`) and the method name (`method`); `module_class_named`
resolves a class name written by an earlier version through `MOVED`, so old checkpoints load.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from nas.errors import NasError, check

# The scorer of one architecture batch: architectures in, one result dict each out (see
# `nas.search.evaluator.OneShotEvaluator`).
Evaluator = Callable[[Sequence], Sequence[Mapping]]

METHODS: dict[str, type] = {}  # method name -> training-module class, filled as classes are defined

# Class names written into checkpoints by earlier versions, for classes that have since moved.
MOVED = {
    "nas.methods.compress.BayesCompressionModule": "nas.methods.bayesnas.compress.BayesCompressionModule",
    "nas.modules.lm.StandaloneLMModule": "nas.methods.enas_rnn.lm.StandaloneLMModule",
    "nas.modules.darts_eval.DartsEvalModule": "nas.methods.darts.eval_module.DartsEvalModule",
}


class MethodModule:
    """Mixed into a method's LightningModule; defaults are those of a single trained supernet."""

    method: ClassVar[str | None] = None  # registry name (a subclass sets it to be registered)
    inputs: ClassVar[frozenset[str]] = frozenset({"space"})  # built by train.py: space, sampler
    learned_outside_trainer: ClassVar[tuple[str, ...]] = ()  # parameter-name prefixes
    derives: ClassVar[str | None] = None  # <run>/search/<derives>/ holds what it derived itself

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = vars(cls).get("method")
        if name:
            METHODS[name] = cls

    # -- a checkpoint, for search -----------------------------------------------------------------
    @classmethod
    def check_searchable(cls, checkpoint: Mapping, path: Path) -> None:
        """Stop with a message saying what to do instead when `checkpoint` cannot be scored."""

    @classmethod
    def restore_arguments(cls, hparams: Mapping) -> dict:
        """The constructor arguments that rebuild the module from its saved hyperparameters."""
        return dict(hparams)

    @classmethod
    def restore(cls, checkpoint: Mapping, path: Path):
        """The module of `checkpoint` (read from `path`) with its trained weights and state."""
        module = cls(**cls.restore_arguments(checkpoint.get("hyper_parameters", {})))
        module.load_state_dict(checkpoint["state_dict"])
        module.on_load_checkpoint(checkpoint)
        return module

    @classmethod
    def searched_together(cls, modules: Sequence, names: Sequence[str]):
        """What one search scores when it is given `modules` (restored from the checkpoints
        `names`): one module is searched as itself; a method that searches several as one
        (few-shot) returns the group, which answers `space`, `hparams`, `eval_ghost_size` and
        `scorer` like a module."""
        check(
            len(modules) == 1,
            f"{', '.join(names)}: {len(modules)} checkpoints of {cls.__name__}, which one search "
            "scores one at a time; pass one checkpoint (ckpt=<run>/checkpoints/last.ckpt)",
        )
        return modules[0]

    def scorer(self, evaluator_of: Callable[[Any], Evaluator]) -> Evaluator:
        """The evaluator of a search: `evaluator_of(module)` builds the one-shot evaluator of a
        trained module (its supernet, with the search's batch, ghost and BN settings)."""
        return evaluator_of(self)

    def checkpoint_identity(self, checkpoint: dict) -> None:
        """Record which class and method wrote `checkpoint` (called from `on_save_checkpoint`)."""
        checkpoint["module_class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        if self.method:
            checkpoint["method"] = self.method


def module_class_named(name: str, path: Path | str = "checkpoint") -> type:
    """The class `name` ("package.module.Class", as checkpoints record it; moved ones via MOVED)."""
    name = MOVED.get(name, name)
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        raise NasError(
            f"checkpoint {str(path)!r} was written by {name}, which this version does not have"
        ) from None


def method_class(name: str) -> type:
    """The training module registered as method `name` (its package `nas.methods.<name>` is
    imported on first use, which registers it)."""
    if name not in METHODS:
        try:
            importlib.import_module(f"nas.methods.{name}")
        except ImportError:
            pass
    check(
        name in METHODS,
        f"unknown method {name!r}; known: {sorted(METHODS)} (a method registers itself with "
        "`method = <name>` on its MethodModule class)",
    )
    return METHODS[name]
