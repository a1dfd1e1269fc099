"""The latency table, timed with a fake clock that advances by a known cost per module: every entry
is the cost of its op's modules (computed here from the space's layout), the prediction is the fixed
part plus the entries of the paths a child holds, and it equals the child's end-to-end time."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from nas.errors import NasError
from nas.latency.attribution import OpModules
from nas.latency.build import build_table, fit_remainder
from nas.latency.table import LatencyTable
from nas.latency.timing import measure_children, measure_networks
from nas.spaces import SPACES
from nas.spaces.nb201 import NB201Space
from nas.spaces.nb201.space import EDGES
from nas.spaces.oneshot_cell import OneShotCellSpace
from tests.conftest import SMALL_SPECS, SPACE_NETWORKS

NETWORK = {"filters": 4, "cells": 2, "stages": 2, "num_classes": 10, "in_channels": 3}
SHAPE = (3, 8, 8)


def cost(module: nn.Module) -> float:
    """What one call of a leaf module costs on the fake clock: distinct per op type and width."""
    own = sum(p.numel() for p in module.parameters(recurse=False))
    return 1e-6 * (1 + own + len(type(module).__name__))


class CostClock:
    """A clock that stands still except while leaf modules run: each call adds its `cost`."""

    def __init__(self):
        self.now = 0.0

    def mark(self) -> float:
        return self.now

    def wait(self) -> None:
        pass

    def seconds(self, start: float, end: float) -> float:
        return end - start

    def __enter__(self):
        def advance(module, _inputs, _output):
            if next(module.children(), None) is None:
                self.now += cost(module)

        # global hooks run before a module's own, so a timed module's leaves are inside its marks
        self._handle = nn.modules.module.register_module_forward_hook(advance)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


def leaves_cost(module: nn.Module) -> float:
    return sum(cost(m) for m in module.modules() if next(m.children(), None) is None)


def oneshot_reference(child, key) -> float:
    """The cost of key's modules in a oneshot_cell child, from the network's own layout."""
    decision, option = key
    total = 0.0
    for cell in child.cells:
        if decision == "adapt":
            total += leaves_cost(cell.adapt[option]) if option in cell.adapt else 0.0
            continue
        block = cell.blocks[int(decision.split("/")[0].removeprefix("block"))]
        part = block.inputs if decision.endswith("/inputs") else block.ops
        total += leaves_cost(part[option])
    return total


def nb201_reference(child, key) -> float:
    edge, op = key
    return sum(leaves_cost(c.edges[edge][op]) for c in child.cells if hasattr(c, "edges"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batch-1 passes of these tiny networks gain nothing from a second thread, and lose much
    when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def oneshot_table():
    space = OneShotCellSpace(num_blocks=2, ops=["identity", "sep3x3", "maxpool3x3"], max_ops=2)
    with CostClock() as clock:
        table = build_table(space, NETWORK, SHAPE, warmup=0, repeats=1, clock=clock)
    return space, table


@pytest.fixture(scope="module")
def nb201_table():
    space = NB201Space()
    with CostClock() as clock:
        table = build_table(space, NETWORK, SHAPE, warmup=0, repeats=1, clock=clock)
    return space, table


@pytest.mark.parametrize(
    "fixture, reference", [("oneshot_table", oneshot_reference), ("nb201_table", nb201_reference)]
)
def test_every_entry_is_the_cost_of_its_ops_modules(request, fixture, reference):
    space, table = request.getfixturevalue(fixture)
    ops = OpModules(space, NETWORK)
    assert set(table.ops) == set(ops.keys())
    unchecked = set(table.ops)
    for arch in _samples(space, 200):
        if unchecked & ops.keys_used(arch):
            child = space.build_child(arch, **NETWORK)
            for key in unchecked & ops.keys_used(arch):
                assert table.ops[key] == pytest.approx(reference(child, key) * 1e3, rel=1e-9), key
            unchecked -= ops.keys_used(arch)
    assert not unchecked


@pytest.mark.parametrize("fixture", ["oneshot_table", "nb201_table"])
def test_prediction_is_the_fixed_part_plus_the_entries_and_equals_the_measured_time(
    request, fixture
):
    space, table = request.getfixturevalue(fixture)
    ops = OpModules(space, NETWORK)
    archs = _samples(space, 8, seed=9)
    children = [space.build_child(a, **NETWORK).eval() for a in archs]
    with CostClock() as clock:
        measured = measure_networks(children, torch.randn(1, *SHAPE), clock, 0, 1)
    for arch, seconds in zip(archs, measured, strict=True):
        entries = sum(table.ops[k] + table.per_path_ms for k in ops.keys_used(arch))
        assert table.predict(arch) == pytest.approx(table.fixed_ms + entries, rel=1e-12)
        assert table.predict(arch) == pytest.approx(seconds * 1e3, rel=1e-9)
    assert table.fixed_ms > 0  # the stem, reductions and head
    assert table.per_path_ms == pytest.approx(0, abs=1e-12)  # nothing runs between the modules


def test_the_remainder_is_fitted_as_fixed_plus_glue_per_path():
    glue = [(n, 0.25 + 0.01 * n) for n in (3, 7, 7, 12)]  # exact: fixed 0.25, 0.01 per path
    assert fit_remainder(glue) == (pytest.approx(0.25), pytest.approx(0.01))
    shrinking = [(3, 0.3), (6, 0.2), (9, 0.25)]  # a negative slope is noise: no glue, the median
    assert fit_remainder(shrinking) == (pytest.approx(0.25), 0.0)
    assert fit_remainder([(5, 0.2), (5, 0.4), (5, 0.3)]) == (pytest.approx(0.3), 0.0)


def test_options_without_parameters_are_found_by_their_modules(nb201_table):
    space, _ = nb201_table
    ops = OpModules(space, NETWORK)
    undeclared = set(ops.keys()) - ops.declared
    assert undeclared == {(e, o) for e in EDGES for o in ("skip_connect", "avg_pool_3x3")}
    with torch.device("meta"):
        assert ops.declared == set(space.build_supernet(**NETWORK).path_keys())


def test_a_module_inside_another_timed_one_is_not_counted_twice():
    inner = nn.ReLU()
    outer = nn.Sequential(nn.Tanh(), inner)
    net = nn.Sequential(outer, nn.Sigmoid())
    with CostClock() as clock:
        [(total, paths)] = measure_children(
            [(net, {("outer",): [outer], ("inner",): [inner]})], torch.zeros(1), clock, 0, 2
        )
    assert paths == {("outer",): pytest.approx(cost(nn.Tanh()) + cost(inner))}
    assert total == pytest.approx(paths[("outer",)] + cost(nn.Sigmoid()))


def test_a_table_survives_its_file_and_refuses_another_network(oneshot_table, tmp_path):
    space, table = oneshot_table
    loaded = LatencyTable.load(table.save(tmp_path / "t.json"))
    arch = space.sample(random.Random(0))
    assert loaded.ops == table.ops and loaded.predict(arch) == table.predict(arch)
    assert loaded.content_hash == table.content_hash
    loaded.check_matches(space, NETWORK, SHAPE)
    with pytest.raises(NasError, match=r"model.filters=4 \(table\) vs 8.*model.filters=8"):
        loaded.check_matches(space, {**NETWORK, "filters": 8}, SHAPE)
    with pytest.raises(NasError, match=r"input shape \[3, 8, 8\] vs \[3, 16, 16\]"):
        loaded.check_matches(space, NETWORK, (3, 16, 16))
    (tmp_path / "bad.json").write_text('{"format": 1}')
    with pytest.raises(NasError, match="is not a table written by python -m nas.latency build"):
        LatencyTable.load(tmp_path / "bad.json")
    with pytest.raises(NasError, match="does not exist; build one"):
        LatencyTable.load(tmp_path / "missing.json")


def _samples(space, n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(n)]


@pytest.mark.slow
def test_build_and_validate_commands(tmp_path, capsys):
    """The command line on the real clock, at the smallest size: it runs and reports (no timing
    is asserted: only what the files and the report hold)."""
    from nas.latency.cli import main

    out = tmp_path / "table.json"
    build = ["build", "--space", "nb201", "--out", str(out), "--warmup", "1", "--repeats", "2"]
    assert main([*build, "--threads", "1", "model.filters=2", "model.cells=3"]) == 0
    table = LatencyTable.load(out)
    assert table.network["filters"] == 2 and table.info["threads"] == 1
    assert {"device", "torch", "date", "cpu"} <= set(table.info) and table.batch_size == 1
    report = tmp_path / "report.json"
    assert main(["validate", "--table", str(out), "--num", "5", "--out", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "Pearson r" in printed and "Spearman rho" in printed and "mean relative error" in printed
    import json

    rows = json.loads(report.read_text())["rows"]
    space = table.space()
    assert len(rows) == 5 and all(r["measured_ms"] > 0 for r in rows)
    by_id = {a.id: a for a in _samples(space, 50, seed=1)}
    assert all(r["predicted_ms"] == pytest.approx(table.predict(by_id[r["arch_id"]])) for r in rows)
    assert main(["build", "--space", "nope", "--out", str(out)]) == 2
    assert "--space 'nope' is not a search space config" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_points_to_the_cpu():
    from nas.latency.timing import clock_for

    with pytest.raises(NasError, match="--device cuda: this machine has no usable CUDA device"):
        clock_for("cuda")


# Every image space, small; the DARTS-like cells with both of their networks, fewer ops and nodes.
SMALL_DARTS = {"ops": ["sep3x3", "maxpool3x3", "identity"], "nodes": 2}
IMAGE_SPACES = [
    (n, SMALL_SPECS.get(n, {}))
    for n in sorted(set(SPACES) - set(SPACE_NETWORKS))
    if n != "darts_cell"
] + [("darts_cell", {**SMALL_DARTS, "network": net}) for net in ("bayesnas", "darts")]
IMAGE_IDS = [f"{n}-{spec['network']}" if "network" in spec else n for n, spec in IMAGE_SPACES]


# ENAS micro runs pooling and identity through module instances shared by every position and held
# outside the child's module tree (cells.STATELESS): no module name ties them to a path, so their
# time falls into the fixed part (docs/latency.md). Strict: a fix shows here.
OUTSIDE_THE_TREE = pytest.mark.xfail(
    strict=True, reason="shared op modules outside the child's module tree are not attributed"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, spec",
    [
        pytest.param(n, spec, marks=OUTSIDE_THE_TREE) if n == "enas_micro" else (n, spec)
        for n, spec in IMAGE_SPACES
    ],
    ids=IMAGE_IDS,
)
def test_every_image_space_predicts_its_childrens_time_on_the_fake_clock(name, spec):
    """With costs that only depend on the module, the additive model is exact wherever every op's
    modules are attributed to its path: a check of the attribution in every space."""
    space = SPACES[name](**spec)
    with CostClock() as clock:
        table = build_table(space, NETWORK, SHAPE, warmup=0, repeats=1, clock=clock)
    archs = _samples(space, 6, seed=3)
    children = [space.build_child(a, **NETWORK).eval() for a in archs]
    with CostClock() as clock:
        measured = measure_networks(children, torch.randn(1, *SHAPE), clock, 0, 1)
    predicted = [table.predict(a) for a in archs]
    assert predicted == pytest.approx([s * 1e3 for s in measured], rel=1e-9)
