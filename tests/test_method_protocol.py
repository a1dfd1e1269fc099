"""The method protocol: checkpoints of every method load under the class names earlier versions
wrote, settings of the supernet base pass through each method once, and the search asks the
protocol (not the class) what to score."""

from __future__ import annotations

import pytest
import torch

from nas.errors import NasError
from nas.methods.bayesnas import BayesNASModule
from nas.methods.darts import DARTSModule
from nas.methods.enas import ENASModule
from nas.methods.fewshot import FewShotModule
from nas.methods.gdas import GDASModule
from nas.modules import MethodModule, OneShotModule
from nas.modules.method import METHODS, method_class, module_class_named
from nas.samplers import UniformSampler
from nas.search.checkpoint import load_for_search, load_supernet_module
from nas.spaces.nb201 import NB201Space

NETWORK = {"filters": 4, "cells": 1, "stages": 1, "num_classes": 10, "in_channels": 3}
SPACE = NB201Space(["none", "skip_connect", "nor_conv_1x1"])

# (class name as the version before method packages wrote it, how to build one now)
WRITTEN_BEFORE = [
    (
        "nas.modules.supernet.OneShotModule",
        lambda: OneShotModule(SPACE, UniformSampler(), **NETWORK),
    ),
    ("nas.methods.enas.ENASModule", lambda: ENASModule(SPACE, **NETWORK)),
    ("nas.methods.darts.DARTSModule", lambda: DARTSModule(SPACE, **NETWORK)),
    ("nas.methods.gdas.GDASModule", lambda: GDASModule(SPACE, **NETWORK)),
    ("nas.methods.bayesnas.BayesNASModule", lambda: BayesNASModule(SPACE, **NETWORK)),
    (
        "nas.methods.fewshot.FewShotModule",
        lambda: FewShotModule(SPACE, "parent.ckpt", "1<-0", "none", load_parent=False, **NETWORK),
    ),
]


def _checkpoint(module, path, module_class: str) -> None:
    """A checkpoint as train.py writes one (hyperparameters, weights, hooks), under `module_class`."""
    raw = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(raw)
    raw["module_class"] = module_class
    raw.pop("method", None)  # earlier versions did not record it
    torch.save(raw, path)


@pytest.mark.parametrize("name,build", WRITTEN_BEFORE, ids=[n for n, _ in WRITTEN_BEFORE])
def test_checkpoints_naming_earlier_class_paths_restore_with_their_weights(tmp_path, name, build):
    torch.manual_seed(0)
    module = build()
    with torch.no_grad():
        for p in module.parameters():  # not the initial values a fresh module would have
            p.add_(torch.randn_like(p))
    _checkpoint(module, tmp_path / "last.ckpt", name)
    restored = load_supernet_module(tmp_path / "last.ckpt", torch.device("cpu"))
    assert type(restored) is type(module)
    assert dict(restored.hparams) == dict(module.hparams)
    theirs, ours = restored.state_dict(), module.state_dict()
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)


def test_moved_classes_resolve_and_unknown_ones_are_named():
    from nas.methods.bayesnas import BayesCompressionModule
    from nas.methods.darts import DartsEvalModule
    from nas.methods.enas_rnn import StandaloneLMModule

    assert module_class_named("nas.modules.lm.StandaloneLMModule") is StandaloneLMModule
    assert module_class_named("nas.modules.darts_eval.DartsEvalModule") is DartsEvalModule
    assert module_class_named("nas.methods.compress.BayesCompressionModule") is (
        BayesCompressionModule
    )
    with pytest.raises(NasError, match="nas.methods.gone.Module, which this version does not"):
        module_class_named("nas.methods.gone.Module", "x.ckpt")


def test_every_method_registers_by_name_and_a_checkpoint_without_class_is_bender_s():
    for name in ("oneshot", "enas", "enas_rnn", "darts", "gdas", "bayesnas", "fewshot"):
        cls = method_class(name)
        assert issubclass(cls, MethodModule) and cls.method == name and METHODS[name] is cls
    with pytest.raises(NasError, match="unknown method 'annealing'"):
        method_class("annealing")


def test_search_asks_the_method_what_several_checkpoints_are(tmp_path):
    for i in range(2):  # two plain supernets in one sweep directory: not searched as one
        (tmp_path / str(i) / "checkpoints").mkdir(parents=True)
        module = OneShotModule(SPACE, UniformSampler(), **NETWORK)
        _checkpoint(
            module, tmp_path / str(i) / "checkpoints" / "last.ckpt", "nas.modules.OneShotModule"
        )
    with pytest.raises(
        NasError, match="2 checkpoints of OneShotModule, which one search scores one"
    ):
        load_for_search(str(tmp_path), torch.device("cpu"))
    sub = FewShotModule(SPACE, "p.ckpt", "1<-0", "none", load_parent=False, **NETWORK)
    _checkpoint(
        sub, tmp_path / "1" / "checkpoints" / "last.ckpt", "nas.methods.fewshot.FewShotModule"
    )
    with pytest.raises(
        NasError, match=r"checkpoints of 2 methods \(FewShotModule, OneShotModule\)"
    ):
        load_for_search(str(tmp_path), torch.device("cpu"))


@pytest.mark.parametrize("cls", [ENASModule, DARTSModule, BayesNASModule])
def test_a_method_takes_the_base_settings_once_and_refuses_the_ones_it_fixes(cls):
    module = cls(SPACE, **{**NETWORK, "mask_seed": 3, "eval_ghost_size": 4})
    assert module.hparams.mask_seed == 3 and module.eval_ghost_size == 4
    for key, value in cls.supernet_defaults.items():  # its own defaults, where they differ
        assert module.hparams[key] == NETWORK.get(key, value)
    for key in cls.fixed_settings:  # fixed: neither a setting nor in the hyperparameters
        assert key not in module.hparams
        with pytest.raises(NasError, match=rf"model\.{key}: not a setting of {cls.__name__}"):
            cls(SPACE, **{**NETWORK, key: cls.fixed_settings[key]})


def test_a_class_that_moved_is_found_by_the_method_name_the_checkpoint_records(tmp_path):
    module = ENASModule(SPACE, **NETWORK)
    raw = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(raw)
    assert raw["method"] == "enas"
    raw["module_class"] = "nas.methods.enas_v0.ENASModule"  # a path this version does not have
    torch.save(raw, tmp_path / "last.ckpt")
    assert type(load_supernet_module(tmp_path / "last.ckpt", torch.device("cpu"))) is ENASModule
