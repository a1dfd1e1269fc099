"""ENAS's final networks (the authors' `--child_fixed_arc` mode) and their training: the published
arcs read in, parameter counts equal a count that follows the authors' code line by line, a
reduction cell computes what its wiring says (by hand), drop-path follows the code's schedule, the
auxiliary head is trained as the code trains it, and both final experiments train through train.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from nas.errors import NasError
from nas.methods.enas import EnasFinalModule
from nas.modules.auxiliary import loss_with_auxiliary
from nas.ops import FactorizedReduction
from nas.spaces.enas_macro import AUTHORS_MACRO_OPS, EnasMacroSpace, parse_arc
from nas.spaces.enas_macro.final import EnasMacroFinalNetwork
from nas.spaces.enas_micro import EnasMicroSpace, loose_ends
from nas.spaces.enas_micro.final import EnasMicroFinalNetwork, FinalMicroCell
from nas.spaces.enas_micro.space import format_arc as format_micro_arc
from nas.spaces.enas_micro.space import parse_arc as parse_micro_arc
from tests.conftest import compose_config
from tests.test_enas_macro_authors import AUTHORS_FINAL_ARC

ROOT = Path(__file__).resolve().parents[1]
F64 = {"rtol": 1e-8, "atol": 1e-10}
# --child_fixed_arc of melodyguan/enas scripts/cifar10_micro_final.sh: normal cell, reduction cell
MICRO_ARC = (
    "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
).split()


def _micro(**settings) -> EnasMicroFinalNetwork:
    arch = parse_micro_arc(EnasMicroSpace(), " ".join(MICRO_ARC))
    return EnasMicroFinalNetwork(arch, **{"filters": 4, "cells": 3, **settings})


def test_the_authors_micro_arc_reads_node_by_node():
    arch = parse_micro_arc(EnasMicroSpace(), " ".join(MICRO_ARC))
    assert format_micro_arc(arch) == " ".join(MICRO_ARC)
    # normal node 2 = avgpool(node 0) + sep3x3(node 0); reduction node 5 = sep3x3(1) + identity(0)
    assert arch["normal/node2/in_a"] == ("normal/0",) and arch["normal/node2/op_a"] == (
        "avgpool3x3",
    )
    assert arch["normal/node2/op_b"] == ("sep3x3",)
    assert arch["reduce/node5/in_a"] == ("reduce/1",) and arch["reduce/node5/op_a"] == ("sep3x3",)
    assert arch["reduce/node5/in_b"] == ("reduce/0",) and arch["reduce/node5/op_b"] == ("identity",)
    assert arch["reduce/node4/in_b"] == ("reduce/3",)
    assert loose_ends(arch, "normal") == (2, 3, 4, 5, 6) and loose_ends(arch, "reduce") == (
        2,
        4,
        5,
        6,
    )
    config = OmegaConf.load(ROOT / "conf/experiment/cifar_enas_micro_final.yaml")
    assert config.arch.split() == MICRO_ARC
    with pytest.raises(NasError, match=r"reads node 5; a node reads nodes 0..1"):
        parse_micro_arc(EnasMicroSpace(), " ".join(["5"] + MICRO_ARC[1:]))
    with pytest.raises(NasError, match=r"arc has 39 numbers; cells of 7 nodes take 40"):
        parse_micro_arc(EnasMicroSpace(), " ".join(MICRO_ARC[1:]))


def _authors_macro_count(arc: str, filters: int) -> int:
    """Parameters of general_child.py's `_fixed_layer` network (whole channels), line by line:
    every stored layer, the stem included, gets a factorized reduction at each pool layer."""
    rows = [list(map(int, line.split())) for line in arc.splitlines()]
    layers, c = len(rows), filters
    pools = [layers // 3 - 1, 2 * (layers // 3) - 1]
    total, stored = 3 * 3 * 3 * c + 2 * c, 1  # stem conv and BN
    for k, (op, *skips) in enumerate(rows):
        size = [3, 3, 5, 5][op]
        total += c * c + 2 * c + size * size * c * c + 2 * c  # conv_1x1, conv_kxk (sep ignored)
        if k:
            total += (sum(skips) + 1) * c * c + 2 * c  # skip: concat -> 1x1
        stored += 1
        if k in pools:
            total += stored * (c * 2 * c + 2 * 2 * c)  # path1/path2 convs to 2c/2 each, BN
            c *= 2
    return total + c * 10  # fc, no bias


def _authors_micro_count(arc: list[int], filters: int, num_layers: int, cells: int = 5) -> int:
    """Parameters of micro_child.py's `_fixed_layer` network without its aux head, line by line."""
    normal, reduce = arc[: 4 * cells], arc[4 * cells :]
    pools = [num_layers // 3, 2 * (num_layers // 3) + 1]
    total = 3 * 3 * 3 * 3 * filters + 2 * 3 * filters  # stem
    layers, out = [(3 * filters, 32), (3 * filters, 32)], filters
    for layer_id in range(num_layers + 2):
        stride, cell_arc = (2, reduce) if layer_id in pools else (1, normal)
        out *= stride
        (c0, hw0), (c1, hw1) = layers
        if hw0 != hw1 or c0 != out:  # factorized reduction or 1x1: c0 * out weights either way
            total += c0 * out + 2 * out
        if c1 != out:
            total += c1 * out + 2 * out
        total += out * out + 2 * out  # layer_base
        used = [0] * (cells + 2)
        for node in range(cells):
            for x_id, x_op in (
                cell_arc[4 * node : 4 * node + 2],
                cell_arc[4 * node + 2 : 4 * node + 4],
            ):
                used[x_id] += 1
                if x_op in (0, 1):  # two separable convs: depthwise, pointwise, BN
                    total += 2 * ([3, 5][x_op] ** 2 * out + out * out + 2 * out)
                elif x_op == 4 and stride == 2 and x_id < 2:  # identity: factorized reduction
                    total += out * out + 2 * out
        unused = [i for i, u in enumerate(used) if not u]
        total += sum(out * out + 2 * out for i in unused if i < 2 and stride == 2)
        layers = [layers[1], (len(unused) * out, hw1 // stride)]
    return total + layers[1][0] * 10


def test_parameter_counts_follow_the_authors_code():
    macro = parse_arc(
        EnasMacroSpace(layers=24, ops=AUTHORS_MACRO_OPS, wiring="authors"), AUTHORS_FINAL_ARC
    )
    micro = parse_micro_arc(EnasMicroSpace(), " ".join(MICRO_ARC))
    with torch.device("meta"):  # the final scripts' widths, nothing allocated
        macro_net = EnasMacroFinalNetwork(macro, filters=96, cells=24)
        micro_net = EnasMicroFinalNetwork(micro, filters=36, cells=15)
    assert macro_net.num_params() == _authors_macro_count(AUTHORS_FINAL_ARC, 96) == 42_559_392
    expected = _authors_micro_count(list(map(int, MICRO_ARC)), 36, 15)
    assert micro_net.num_params() == expected == 3_894_372
    assert len(micro_net.cells) == 17 and micro_net.aux_after == 12  # the code's aux_head_indices


@pytest.mark.slow
def test_reduction_cell_by_hand():
    arch = parse_micro_arc(EnasMicroSpace(), " ".join(MICRO_ARC))
    torch.manual_seed(0)
    cell = FinalMicroCell("reduce", arch, (6, 1), (6, 1), 4).double().eval()
    ops = cell.ops
    assert isinstance(ops["node5_b"], FactorizedReduction)  # identity of a cell input, stride 2
    assert ops["node3_a"].stride == 2 and ops["node4_b"].units[0].depthwise.stride == (1, 1)
    assert ops["node4_a"].units[0].depthwise.stride == (2, 2)
    assert set(cell.reduce_loose) == set()  # nodes 0 and 1 are both read
    older, newer = (torch.randn(2, 6, 4, 4, dtype=torch.float64) for _ in range(2))
    n0, n1 = cell.calibrate_older(older), cell.base(cell.calibrate_newer(newer))
    n2 = ops["node2_a"](n1) + ops["node2_b"](n1)
    n3 = ops["node3_a"](n0) + ops["node3_b"](n0)
    n4 = ops["node4_a"](n1) + ops["node4_b"](n3)
    n5 = ops["node5_a"](n1) + ops["node5_b"](n0)
    n6 = ops["node6_a"](n0) + ops["node6_b"](n1)
    out = cell(older, newer, 0.0)
    torch.testing.assert_close(out, torch.cat([n2, n4, n5, n6], 1), **F64)
    assert out.shape == (2, 4 * 4, 2, 2) and cell.out_channels == 16
    # the normal cell after it reads an output at twice its resolution: ReLU -> reduction
    net = _micro()
    kinds = [c.kind for c in net.cells]
    assert kinds == ["normal", "reduce", "normal", "reduce", "normal"]
    assert isinstance(net.cells[2].calibrate_older, FactorizedReduction)
    assert net.cells[2].calibrate_older.relu and net.aux_after == 4


@pytest.mark.slow
def test_drop_path_grows_with_depth_and_training(monkeypatch):
    import nas.spaces.enas_micro.final as final

    seen = []
    monkeypatch.setattr(final, "drop_path", lambda x, p: seen.append(round(p, 12)) or x)
    net = _micro(drop_path=0.4)
    net.drop_progress = 0.5
    net.eval()(torch.randn(2, 3, 8, 8))
    assert seen == []  # evaluation: none
    net.train()(torch.randn(2, 3, 8, 8))
    # 5 cells; normal cells have 2 identities (8 ops dropped), reduction cells 1 (9 dropped)
    per_cell = [0.4 * 0.5 * (i + 1) / 5 for i in range(5)]
    counts = [8, 9, 8, 9, 8]
    assert seen == [round(p, 12) for p, n in zip(per_cell, counts, strict=True) for _ in range(n)]


def test_auxiliary_loss_and_the_untrained_head():
    logits, aux, y = torch.randn(4, 10), torch.randn(4, 10), torch.tensor([1, 2, 3, 4])

    class Log:
        logged = {}

        def log(self, key, value):
            self.logged[key] = value

    module = Log()
    loss, main = loss_with_auxiliary(module, (logits, aux), y, 0.4)
    assert main is logits
    torch.testing.assert_close(loss, F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y))
    assert loss_with_auxiliary(module, logits, y, 0.4)[0] == F.cross_entropy(logits, y)
    arc = " ".join(MICRO_ARC)
    settings = {"space": EnasMicroSpace(), "filters": 4, "cells": 3, "auxiliary": True}
    frozen = EnasFinalModule(arc, **settings)
    head = list(frozen.net.auxiliary_head.parameters())
    trained = {
        id(p) for g in frozen.configure_optimizers()["optimizer"].param_groups for p in g["params"]
    }
    assert head and not any(p.requires_grad or id(p) in trained for p in head)
    assert (
        frozen.num_params == frozen.net.num_params() < sum(p.numel() for p in frozen.parameters())
    )
    learning = EnasFinalModule(arc, **settings, train_auxiliary_head=True)
    group = learning.configure_optimizers()["optimizer"].param_groups[0]
    assert group["weight_decay"] == 4e-4 and group["nesterov"]
    assert len(group["params"]) == len(list(learning.parameters()))


def test_bad_settings_are_refused():
    macro = EnasMacroSpace(layers=2, ops=AUTHORS_MACRO_OPS, wiring="authors")
    with pytest.raises(NasError, match=r"no auxiliary head and no drop-path"):
        EnasFinalModule("0 1 0", space=macro, filters=4, cells=2, auxiliary=True)
    with pytest.raises(NasError, match=r"model.cells=3 must equal the architecture's 2 layers"):
        EnasFinalModule("0 1 0", space=macro, filters=4, cells=3)
    with pytest.raises(NasError, match=r"reads into model.space, which is unset"):
        EnasFinalModule("0 1 0", filters=4, cells=2)
    with pytest.raises(NasError, match=r"model.lr_min=0.1 must lie in \[0, model.lr=0.05\)"):
        EnasFinalModule("0 1 0", space=macro, filters=4, cells=2, lr_min=0.1)
    with pytest.raises(NasError, match=r"model.filters=5 must be even"):
        EnasFinalModule(" ".join(MICRO_ARC), space=EnasMicroSpace(), filters=5, cells=3)


QUICK = [  # a few steps on synthetic images: the configs as shipped, made smaller
    "dataset=synthetic",
    "dataset.image_size=16",
    "dataset.batch_size=8",
    "dataset.train_subset=16",
    "dataset.val_size=16",
    "dataset.test_size=16",
    "dataset.eval_batch_size=16",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
]


@pytest.mark.slow
def test_the_final_micro_experiment_trains_through_train_py(tmp_path):
    """The quick micro config as shipped (its arc, auxiliary head, drop-path, cutout), smaller;
    the macro configs are built from their files by test_every_config.py."""
    import train

    cfg = compose_config("train", ["experiment=quickstart_enas_micro_final", *QUICK], tmp_path)
    train.train(cfg)
    result = json.loads((tmp_path / "result.json").read_text())
    config = OmegaConf.load(ROOT / "conf/experiment/quickstart_enas_micro_final.yaml")
    arch = parse_micro_arc(EnasMicroSpace(), config.arch)
    assert result["kind"] == "EnasFinalModule" and result["arch_id"] == arch.id
    assert result["steps"] == 2 and "test_acc" in result
    (path,) = tmp_path.rglob("metrics.csv")
    rows = list(csv.DictReader(path.open()))
    assert any(r.get("train/aux_loss") for r in rows)
    drops = [float(r["train/drop_prob"]) for r in rows if r.get("train/drop_prob")]
    assert drops == pytest.approx([0.2, 0.4])  # drop_path 0.4 · (step + 1) / 2 steps
