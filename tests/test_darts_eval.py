"""DARTS's evaluation network and its retraining module on darts_cell architectures."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from nas.errors import NasError
from nas.methods.darts.eval_module import DartsEvalModule
from nas.spaces.darts_cell import DartsCellSpace
from nas.spaces.darts_cell.eval_network import DartsEvalNetwork
from nas.spaces.darts_cell.genotype import DARTS_V2
from tests.conftest import compose_config

TINY = {"filters": 4, "cells": 5}


@pytest.fixture
def v2():
    return DartsCellSpace().from_genotype(DARTS_V2)


def _x(n=4, size=8, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_shapes_with_and_without_aux(v2):
    torch.manual_seed(0)
    net = DartsEvalNetwork(v2, **TINY, num_classes=7)
    assert [c.kind for c in net.cells] == ["normal", "reduce", "normal", "reduce", "normal"]
    net.train()
    logits, aux = net(_x())
    assert logits.shape == aux.shape == (4, 7)
    net.eval()
    out = net(_x())
    assert isinstance(out, torch.Tensor) and out.shape == (4, 7)
    plain = DartsEvalNetwork(v2, **TINY, num_classes=7, auxiliary=False).train()
    assert plain.auxiliary_head is None
    out = plain(_x())
    assert isinstance(out, torch.Tensor) and out.shape == (4, 7)
    # CIFAR-sized images: DARTS's auxiliary pooling (8x8 -> 2x2).
    logits, aux = net.train()(_x(2, 32))
    assert logits.shape == aux.shape == (2, 7)


def test_darts_v2_has_darts_parameter_count(v2):
    with torch.device("meta"):
        net = DartsEvalNetwork(v2, filters=36, cells=20, num_classes=10)
    # DARTS reports 3.3 M (its count leaves out the auxiliary head); its code gives 3.349342 M.
    assert abs(net.num_params() - 3.3e6) <= 0.1e6
    assert net.num_params(auxiliary=True) > net.num_params()


def test_drop_path_only_in_training(v2):
    torch.manual_seed(0)
    net = DartsEvalNetwork(v2, **TINY, drop_path=0.5)
    net.drop_prob = 0.5
    net.eval()
    x = _x()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert torch.equal(a, b)  # no randomness in eval
    net.drop_prob = 0.0
    with torch.no_grad():
        assert torch.equal(net(x), a)  # drop_prob has no effect in eval
    net.train()
    net.drop_prob = 0.5
    torch.manual_seed(1)
    with torch.no_grad():
        c = net(x)[0]
    torch.manual_seed(2)
    with torch.no_grad():
        d = net(x)[0]
    assert not torch.equal(c, d)


def test_any_architecture_and_dead_nodes():
    space = DartsCellSpace()
    choices = {d.name: () for d in space.decisions}
    for cell in ("normal", "reduce"):
        choices[f"{cell}/0<-in0"] = ("sep3x3", "identity", "avgpool3x3")
        choices[f"{cell}/1<-in1"] = ("dil5x5",)
        choices[f"{cell}/3<-1"] = ("sep5x5", "maxpool3x3")  # node 2 dead: zeros
    net = DartsEvalNetwork(space.architecture(choices), **TINY).eval()
    assert net(_x()).shape == (4, 10)


def test_bad_settings_refused(v2):
    with pytest.raises(NasError, match="model.filters"):
        DartsEvalNetwork(v2, filters=5)
    with pytest.raises(NasError, match="model.cells"):
        DartsEvalNetwork(v2, cells=2)


def test_module_reads_a_genotype(v2):
    torch.manual_seed(0)
    module = DartsEvalModule(DARTS_V2, **TINY)
    assert module.arch == v2 and module.hparams.arch_id == v2.id
    logits, aux = module.train()(_x())
    assert logits.shape == aux.shape == (4, 10)
    assert module.eval()(_x()).shape == (4, 10)
    assert module.num_params == module.net.num_params()


def test_training_steps_through_train(tmp_path, v2):
    import train

    arch_file = tmp_path / "derived_arch.json"
    v2.save(arch_file)
    run = tmp_path / "run"
    cfg = compose_config(
        "train",
        [
            "experiment=cifar_darts_eval",
            f"arch={arch_file}",
            "dataset=synthetic",
            "dataset.batch_size=8",
            "dataset.eval_batch_size=32",
            "dataset.train_subset=8",
            "hardware=cpu",
            "logger=csv",
            "model.filters=4",
            "model.cells=5",
            "trainer.max_epochs=2",
            "trainer.log_every_n_steps=1",
            "trainer.enable_progress_bar=false",
        ],
        run,
    )
    train.train(cfg)
    result = json.loads((run / "result.json").read_text())
    assert result["kind"] == "DartsEvalModule" and result["arch_id"] == v2.id
    assert result["steps"] == 2 and "test_acc" in result  # one step per epoch
    (path,) = run.rglob("metrics.csv")
    rows = list(csv.DictReader(path.open()))
    assert any(r.get("train/aux_loss") for r in rows)
    drop = [float(r["train/drop_prob"]) for r in rows if r.get("train/drop_prob")]
    assert drop == pytest.approx([0.0, 0.2 * 1 / 2])  # drop_path · epoch / epochs
