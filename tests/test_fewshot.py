"""Few-shot NAS: the split sampler, sub-supernets from the parent's weights, routed search."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from nas.errors import NasError
from nas.methods.fewshot.module import FewShotModule, SplitSampler
from nas.methods.fewshot.routing import RoutedEvaluator, SubSupernets, check_split
from nas.modules import OneShotModule
from nas.samplers import FairSampler, PathDropout, UniformSampler, build_sampler
from nas.search.evaluator import OneShotEvaluator
from nas.spaces import Architecture
from nas.spaces.nb201 import NB201Space
from tests.conftest import compose_config

SPLIT = "1<-0"
OPS = ("skip_connect", "nor_conv_1x1", "avg_pool_3x3")  # a small NAS-Bench-201 space: 3^6 cells
NETWORK = {"filters": 4, "cells": 2, "stages": 2, "num_classes": 10, "in_channels": 3}


@pytest.fixture
def space():
    return NB201Space(OPS)


@pytest.fixture
def parent_ckpt(tmp_path, space) -> Path:
    """A supernet checkpoint as train.py writes it (hyperparameters, weights, module class)."""
    torch.manual_seed(0)
    module = OneShotModule(space, UniformSampler(), ghost_size=8, **NETWORK)
    with torch.no_grad():
        for p in module.parameters():  # not the initial values a fresh module would have
            p.add_(torch.randn_like(p))
    path = tmp_path / "parent" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    raw = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    module.on_save_checkpoint(raw)
    torch.save(raw, path)
    return path


def _sub(space, parent, option, **kwargs) -> FewShotModule:
    return FewShotModule(
        space, str(parent), SPLIT, option, UniformSampler(), ghost_size=8, **NETWORK, **kwargs
    )


def _archs_of_every_option(space, n=40) -> list:
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(n)]
    assert {a[SPLIT][0] for a in archs} == set(space.decision(SPLIT).options)
    return archs


# -- routing ------------------------------------------------------------------------------------
def test_routing_sends_every_architecture_to_its_options_evaluator(space):
    got: dict[str, list] = {o: [] for o in OPS}

    def fake(option):
        def evaluate(archs):
            got[option].extend(archs)
            return [{"oneshot_acc": 0.5, "by": option, "id": a.id} for a in archs]

        return evaluate

    routed = RoutedEvaluator({o: fake(o) for o in OPS}, SPLIT)
    archs = _archs_of_every_option(space)
    results = routed(archs)
    assert [r["id"] for r in results] == [a.id for a in archs]  # input order
    assert [r["by"] for r in results] == [a[SPLIT][0] for a in archs]
    for option in OPS:
        assert got[option] and all(a[SPLIT] == (option,) for a in got[option])
        assert [a.id for a in got[option]] == [a.id for a in archs if a[SPLIT] == (option,)]
    with pytest.raises(NasError, match="takes .* on decision '1<-0'"):
        RoutedEvaluator({o: fake(o) for o in OPS[:2]}, SPLIT)(archs)


def test_scores_of_a_split_come_only_from_its_sub_supernet(space, parent_ckpt):
    """Every classifier favours class 9 (no label is 9: accuracy 0); then one sub-supernet's
    favours class 0 (half the labels): only the architectures of its option score 0.5."""
    modules = [_sub(space, parent_ckpt, o) for o in OPS]
    for m in modules:
        with torch.no_grad():
            m.supernet.classifier.weight.zero_()
            m.supernet.classifier.bias.copy_(torch.arange(10.0) * 100)
    images = torch.randn(32, 3, 8, 8)
    labels = torch.tensor([0, 1] * 16)
    routed = SubSupernets(modules).scorer(
        lambda m: OneShotEvaluator(m.supernet, images, labels, 16, 8)
    )
    archs = _archs_of_every_option(space)
    before = [r["oneshot_acc"] for r in routed(archs)]
    assert before == [0.0] * len(archs)
    with torch.no_grad():  # perturb the sub-supernet of the second option only
        modules[1].supernet.classifier.bias.copy_(-torch.arange(10.0) * 100)
    after = [r["oneshot_acc"] for r in routed(archs)]
    assert after == [0.5 if a[SPLIT] == (OPS[1],) else 0.0 for a in archs]


def test_search_over_sub_supernets_needs_one_complete_split(space, parent_ckpt):
    modules = [_sub(space, parent_ckpt, o) for o in OPS]
    with pytest.raises(NasError, match=r"cover options .* but not \['avg_pool_3x3'\]"):
        check_split(modules[:2])
    with pytest.raises(NasError, match="option 'skip_connect' has 2 sub-supernets"):
        check_split([*modules, modules[0]])
    plain = OneShotModule(space, UniformSampler(), ghost_size=8, **NETWORK)
    with pytest.raises(NasError, match="not a few-shot sub-supernet"):
        check_split([*modules, plain])
    wide = FewShotModule(
        space, "x", SPLIT, OPS[0], load_parent=False, ghost_size=8, **{**NETWORK, "filters": 8}
    )
    with pytest.raises(NasError, match="has network"):
        check_split([wide, *modules[1:]])
    assert plain.scorer(lambda m: "own") == "own"  # a one-shot supernet: its own evaluator


# -- the split sampler ----------------------------------------------------------------------------
@pytest.mark.parametrize("inner", [UniformSampler(), PathDropout(0.5, "constant"), FairSampler()])
def test_split_sampler_fixes_the_split_column_and_nothing_else(space, inner):
    wrapped = SplitSampler(SPLIT, "nor_conv_1x1", inner)
    wrapped.check_space(space)
    assert wrapped.copies(space) == inner.copies(space)
    onehot = torch.tensor([0.0, 1.0, 0.0])
    for seed in range(5):
        drawn = inner.sample(space, 4, 0.5, torch.Generator().manual_seed(seed))
        split = wrapped.sample(space, 4, 0.5, torch.Generator().manual_seed(seed))
        assert split.keys() == drawn.keys()
        assert (split[SPLIT] == onehot).all() and len(split[SPLIT]) == len(drawn[SPLIT])
        for name in drawn.keys() - {SPLIT}:
            assert torch.equal(split[name], drawn[name])
    for batch in range(3):
        drawn = inner.eval_weights(space, 4, batch) or space.full_masks(4)  # None: all-on
        split = wrapped.eval_weights(space, 4, batch)
        assert (split[SPLIT] == onehot).all()
        assert all(torch.equal(split[n], drawn[n]) for n in drawn.keys() - {SPLIT})
    again = build_sampler(wrapped.spec())
    assert again.spec() == wrapped.spec() and again.spec()["sampler"] == inner.spec()


# -- the sub-supernet ------------------------------------------------------------------------------
def test_sub_supernet_starts_from_the_parents_weights_exactly(space, parent_ckpt):
    parent = torch.load(parent_ckpt, weights_only=True)["state_dict"]
    module = _sub(space, parent_ckpt, "avg_pool_3x3")
    own = module.supernet.state_dict()
    assert own.keys() == {k.removeprefix("supernet.") for k in parent}
    assert all(torch.equal(own[k], parent[f"supernet.{k}"]) for k in own)
    assert (module.hparams.split, module.hparams.option) == (SPLIT, "avg_pool_3x3")
    assert module.hparams.parent == str(parent_ckpt.resolve())
    # every training step and validation batch uses the option on the split edge only
    weights = module.sampler.sample(space, 4, 0.0, module.mask_generator)
    assert (weights[SPLIT] == torch.tensor([0.0, 0.0, 1.0])).all()
    # a checkpoint of it reloads without the parent (its own weights come from the checkpoint)
    from nas.search.checkpoint import load_supernet_module

    path = parent_ckpt.parent.parent.parent / "sub.ckpt"
    raw = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    module.on_save_checkpoint(raw)
    torch.save(raw, path)
    parent_ckpt.unlink()
    loaded = load_supernet_module(str(path), torch.device("cpu"))
    assert isinstance(loaded, FewShotModule) and loaded.sampler.spec() == module.sampler.spec()
    assert all(torch.equal(loaded.supernet.state_dict()[k], v) for k, v in own.items())


def test_wrong_split_or_parent_is_refused(space, parent_ckpt, small_space):
    several = small_space.decisions[0]
    with pytest.raises(NasError, match=rf"'{several.name}'.*exactly one\s+option.*min_k=\d"):
        FewShotModule(small_space, "x", several.name, several.options[0], load_parent=False)
    with pytest.raises(NasError, match="not a decision of search space 'nb201'"):
        FewShotModule(space, str(parent_ckpt), "4<-0", OPS[0], **NETWORK)
    with pytest.raises(NasError, match="not an option of decision '1<-0'"):
        _sub(space, parent_ckpt, "nor_conv_3x3")
    with pytest.raises(NasError, match=r"has network \{'filters': 4.*this run's is \{'filters': 8"):
        FewShotModule(space, str(parent_ckpt), SPLIT, OPS[0], **{**NETWORK, "filters": 8})
    with pytest.raises(NasError, match="fingerprint"):
        FewShotModule(NB201Space(OPS[:2]), str(parent_ckpt), SPLIT, OPS[0], **NETWORK)
    with pytest.raises(NasError, match="does not exist"):
        _sub(space, parent_ckpt.with_name("gone.ckpt"), OPS[0])


# -- end to end --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_split_then_search_end_to_end(tmp_path, capsys):
    import search
    import train
    from nas.search.checkpoint import load_supernet_module

    ops = f"search_space.ops=[{','.join(OPS)}]"
    parent = tmp_path / "parent"
    cfg = compose_config(
        "train",
        ["experiment=smoke", "search_space=nb201", "~search_space.num_blocks", ops],
        parent,
    )
    train.train(cfg)
    ckpt = parent / "checkpoints" / "last.ckpt"
    sweep = tmp_path / "split"
    for i, option in enumerate(OPS):
        given = [f"model.parent={ckpt}", f"model.option={option}", ops]
        train.train(compose_config("train", ["experiment=smoke_fewshot", *given], sweep / str(i)))

    def run_search(directory, out):
        given = [f"ckpt={directory}", f"out_dir={out}", "search.num_archs=15", "selection.k=2"]
        return search.run(compose_config("search", ["experiment=smoke_fewshot", *given], out))

    ckpt.unlink()  # the sub-supernets' checkpoints hold their own weights: no parent needed
    out = tmp_path / "search"
    paths = run_search(sweep, out)
    assert Path(paths["ranking"]).is_file()
    with sqlite3.connect(out / "results.sqlite") as db:
        rows = db.execute("SELECT arch_json, oneshot_acc, checkpoint FROM results").fetchall()
    assert len(rows) == 15 and all(r[2] == str(sweep.resolve()) for r in rows)
    # each stored score is the one its own sub-supernet gives
    subs = {}
    for i in range(len(OPS)):
        path = sweep / str(i) / "checkpoints" / "last.ckpt"
        module = load_supernet_module(path, torch.device("cpu"))
        subs[module.hparams.option] = module
    data = instantiate(compose_config("train", ["experiment=smoke_fewshot"], tmp_path).dataset)
    data.setup("validate")
    images, labels = data.normalize(data.val_split.images), data.val_split.labels
    space = subs[OPS[0]].space
    for arch_json, score, _ in rows[:5]:
        arch = Architecture.from_json(arch_json, space)
        own = OneShotEvaluator(subs[arch[SPLIT][0]].supernet, images, labels, 32, 8)
        assert own([arch])[0]["oneshot_acc"] == pytest.approx(score)
    # a directory missing an option's sub-supernet is refused, naming it
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "0").symlink_to(sweep / "0")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        run_search(partial, tmp_path / "search2")
    assert "but not ['nor_conv_1x1', 'avg_pool_3x3']" in capsys.readouterr().err
