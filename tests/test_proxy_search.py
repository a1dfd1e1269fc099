"""A proxy search through search.py (strategy=proxy): the store it fills holds the proxy's scores,
computed here again from their definition's inputs; it resumes, keeps proxies and batches apart,
and takes its network from the experiment's config or from a checkpoint."""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

import hydra
import pytest
import torch

from nas.errors import NasError
from nas.proxies import proxy_named
from nas.proxies.scoring import proxy_score
from nas.report.stores import setup_line, store_setup
from nas.results.complexity import count_macs, count_params
from nas.results.store import ResultsStore
from nas.search.proxy_scorer import UNDEFINED, ProxyScorer
from nas.search.strategies import RandomSearch
from nas.spaces import Architecture, build_space
from nas.spaces.nb201 import NB201Space
from tests.conftest import compose_config

SMOKE = ["experiment=smoke", "strategy=proxy", "selection.k=2", "proxy.images=8"]


def _search(out_dir, *overrides):
    import search

    cfg = compose_config("search", [*SMOKE, f"out_dir={out_dir}", *overrides], out_dir)
    return search.run(cfg)


def _rows(out_dir) -> list[tuple]:
    with sqlite3.connect(Path(out_dir) / "results.sqlite") as db:
        sql = "SELECT seq, arch_id, oneshot_acc, params, macs, created FROM results ORDER BY seq"
        return db.execute(sql).fetchall()


def _expected(store_path, proxy: str) -> dict[str, float]:
    """Each stored architecture's proxy score, from the recorded setup: the training batch drawn
    by a seeded permutation of the training split, the child built from the same seed."""
    with ResultsStore(store_path) as store:
        setup, rows = store.get_meta("evaluation"), store.results()
        space = build_space(store.get_meta("space_spec"))
    datamodule = hydra.utils.instantiate(setup["dataset"])
    datamodule.setup("fit")
    split, n, seed = datamodule.train_split, setup["proxy"]["images"], setup["proxy"]["seed"]
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    images, labels = datamodule.normalize(split.images[order]), split.labels[order]
    return {
        r["arch_id"]: proxy_score(
            proxy_named(proxy),
            Architecture.from_json(r["arch_json"], space),
            setup["network"],
            images,
            labels,
            seed,
        )[0]
        for r in rows
    }


@pytest.mark.slow
def test_a_proxy_search_stores_the_proxys_scores_resumes_and_keeps_setups_apart(tmp_path, capsys):
    out = tmp_path / "snip"
    _search(out, "proxy=snip", "search.num_archs=3", "model.filters=2")
    assert "experiment's config (no checkpoint)" in capsys.readouterr().err
    rows = _rows(out)
    with ResultsStore(out / "results.sqlite") as store:
        setup, cost = store.get_meta("evaluation"), store.get_meta("proxy_cost")
        space = build_space(store.get_meta("space_spec"))
        assert store.get_meta("checkpoint") is None and setup["checkpoint_sha256"] is None
    assert setup["proxy"] == {"name": "snip", "images": 8, "seed": 0}
    # model.* is read without a checkpoint: the children are 2 filters wide
    assert setup["network"] == {
        "filters": 2, "cells": 2, "stages": 2, "num_classes": 10, "in_channels": 3
    }  # fmt: skip
    assert cost["proxy"] == "snip" and cost["archs"] == 3 and cost["seconds"] > 0
    line = setup_line(*store_setup(out / "results.sqlite"))  # the ranking report's header
    assert "proxy snip of each untrained child on 8 training images (seed 0)" in line
    # the architectures random search with the same seed scores, in its order
    stream = RandomSearch(space, random.Random(0))
    assert [r[1] for r in rows] == [stream.ask().id for _ in range(3)]
    expected = _expected(out / "results.sqlite", "snip")
    assert {r[1]: r[2] for r in rows} == pytest.approx(expected, rel=1e-12)
    for _, arch_id, _, params, macs, _ in rows:  # sizes of the child itself
        with ResultsStore(out / "results.sqlite") as store:
            arch = Architecture.from_json(store.get(arch_id)["arch_json"], space)
        child = space.build_child(arch, **setup["network"])
        assert (params, macs) == (count_params(child), count_macs(child, (3, 8, 8)))

    # one more architecture: the 3 stored rows are reused untouched, 1 new one scored
    _search(out, "proxy=snip", "search.num_archs=4", "model.filters=2")
    assert "scored 1 new architecture(s)" in capsys.readouterr().err
    assert _rows(out)[:3] == rows and len(_rows(out)) == 4
    with ResultsStore(out / "results.sqlite") as store:
        assert store.get_meta("proxy_cost")["archs"] == 4

    # another proxy or batch in the same folder: refused, the differences named
    with pytest.raises(SystemExit):
        _search(out, "proxy=grad_norm", "search.num_archs=4", "model.filters=2")
    assert "another evaluation setup (proxy.name: 'snip' -> 'grad_norm')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _search(out, "proxy=snip", "proxy.images=16", "search.num_archs=4", "model.filters=2")
    assert "eval_ghost_size: 8 -> 16" in capsys.readouterr().err
    assert len(_rows(out)) == 4


@pytest.mark.slow
def test_with_a_checkpoint_the_space_and_network_are_the_checkpoints(
    smoke_supernet, tmp_path, capsys
):
    ckpt = smoke_supernet / "checkpoints" / "last.ckpt"
    out = tmp_path / "ckpt"
    _search(out, f"ckpt={ckpt}", "proxy=naswot", "search.num_archs=3")
    assert "(its trained weights are not used" in capsys.readouterr().err
    with ResultsStore(out / "results.sqlite") as store:
        setup = store.get_meta("evaluation")
        assert store.get_meta("checkpoint") == str(ckpt.resolve())
    assert setup["network"]["filters"] == 4 and setup["checkpoint_sha256"]
    expected = _expected(out / "results.sqlite", "naswot")
    assert {r[1]: r[2] for r in _rows(out)} == pytest.approx(expected, rel=1e-12)
    with pytest.raises(SystemExit):  # the network is the checkpoint's: model.* would do nothing
        _search(tmp_path / "x", f"ckpt={ckpt}", "search.num_archs=3", "model.filters=2")
    assert "search.py does not read model.*" in capsys.readouterr().err
    import search

    cfg = compose_config("search", ["experiment=smoke", "ckpt=null"], tmp_path)
    with pytest.raises(SystemExit):  # only a proxy scores without a checkpoint
        search.run(cfg)
    assert "ckpt=null: search.py scores a trained supernet" in capsys.readouterr().err


@pytest.mark.slow
def test_results_folders_are_named_after_the_proxy(tmp_path):
    cfg = compose_config("search", ["strategy=proxy", "proxy=jacob_cov", "ckpt=r/c.ckpt"], tmp_path)
    assert cfg.out_dir == f"{Path('r').resolve()}/search/proxy-jacob_cov-seed0"
    cfg = compose_config("search", ["experiment=quickstart_nb201", "strategy=proxy"], tmp_path)
    assert cfg.out_dir == "outputs/search/quickstart_nb201/proxy-synflow-seed0"
    assert (cfg.proxy.images, cfg.proxy.seed, cfg.ckpt) == (64, 0, None)


@pytest.mark.slow
def test_an_undefined_proxy_score_is_stored_below_every_other():
    space = NB201Space()
    empty = space.architecture({d.name: ["none"] for d in space.decisions})  # output ignores input
    other = space.from_arch_string(
        "|nor_conv_1x1~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    )
    network = {"filters": 2, "cells": 1, "stages": 1, "num_classes": 3, "in_channels": 1}
    images, labels = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    scorer = ProxyScorer("jacob_cov", space, network, images, labels, seed=0)
    rows = scorer([empty, other])
    direct = proxy_score(proxy_named("jacob_cov"), other, network, images, labels, 0)[0]
    assert rows[0]["oneshot_acc"] == UNDEFINED < rows[1]["oneshot_acc"] == pytest.approx(direct)
    assert scorer.scorer(None) is scorer and scorer.hparams.num_classes == 3
    with pytest.raises(NasError, match="proxy=.nope. is not a known proxy"):
        ProxyScorer("nope", space, network, images, labels, seed=0)


def test_a_batch_outside_the_training_split_and_an_overflow_are_named():
    from nas.data import SyntheticDataModule
    from nas.search.proxy_scorer import proxy_batch

    data = SyntheticDataModule(train_size=32, val_size=8, test_size=8, image_size=4, batch_size=8)
    images, labels = proxy_batch(data, 5, seed=1)
    order = torch.randperm(len(data.train_split), generator=torch.Generator().manual_seed(1))[:5]
    assert torch.equal(labels, data.train_split.labels[order]) and images.shape == (5, 3, 4, 4)
    with pytest.raises(NasError, match=r"proxy.images=100 must be an integer in 2..32"):
        proxy_batch(data, 100, seed=1)
    space = NB201Space()
    network = {"filters": 2, "cells": 1, "stages": 1, "num_classes": 10, "in_channels": 3}
    scorer = ProxyScorer("synflow", space, network, images, labels, seed=0)
    with pytest.raises(NasError, match="proxy synflow overflowed to \\+inf for architecture"):
        scorer._storable(space.sample(random.Random(0)), math.inf)
