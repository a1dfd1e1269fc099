"""DARTS's search network (`search_space.network=darts`): the authors' parameter counts, equal
outputs to a plain transcription of their `Network`, the same ops as the evaluation network builds
(searched = retrained), the methods that run on darts_cell, and checkpoints of the older style."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from nas.errors import NasError
from nas.methods.darts.module import DARTSModule
from nas.methods.gdas.module import GDASModule
from nas.modules.supernet import OneShotModule
from nas.ops import FactorizedReduction, Identity
from nas.search.checkpoint import load_supernet_module
from nas.spaces import build_space
from nas.spaces.darts_cell import BAYESNAS_OPS, DartsCellSpace, dense_edges
from nas.spaces.darts_cell.darts_ops import make_darts_op, relu_conv_bn
from nas.spaces.darts_cell.eval_network import DartsEvalNetwork
from nas.spaces.darts_cell.genotype import DARTS_OPS, DARTS_V2, OUR_OPS
from tests import test_space_interface as interface

F64 = {"rtol": 1e-8, "atol": 1e-10}
# DARTS's search network, Network(C=16, num_classes=10, layers=8): 6 normal cells, reductions at
# layers 8 // 3 = 2 and 2 * 8 // 3 = 5, i.e. here 3 stages of 2 normal cells.
AUTHORS = {"filters": 16, "cells": 6, "stages": 3, "num_classes": 10, "in_channels": 3}
LAYERS = 8
EVERY_OP = DartsCellSpace.darts(nodes=2)  # 5 edges per cell, every op
# For the mechanics: one op of each kind (the 5x5 ones differ from the 3x3 ones in kernel only;
# dilated depthwise convolutions are slow on the CPU). Stride-2 edges, dead nodes.
SMALL = DartsCellSpace.darts(["sep3x3", "dil3x3", "maxpool3x3", "avgpool3x3", "identity"], nodes=2)
SLOW = pytest.mark.slow
TINY = {"filters": 2, "cells": 2, "stages": 2, "num_classes": 3, "in_channels": 3}


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- DARTS's search network, transcribed from the DARTS code (cnn/model_search.py, operations.py) --
PRIMITIVES = [  # genotypes.py; "none" is the Zero op: no module, no contribution
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
]


class RefFactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x):
        x = torch.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def _ref_relu_conv_bn(c_in, c_out):
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=False)
    )


def _ref_op(name, c, stride):
    if name == "none":
        return None
    if name.endswith("pool_3x3"):  # MixedOp puts an affine-free BN after every pool
        pool = (
            nn.MaxPool2d(3, stride, 1)
            if name.startswith("max")
            else nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        )
        return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False))
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else RefFactorizedReduce(c, c)
    k = int(name[-1])
    if name.startswith("sep"):  # SepConv(C, C, k, stride, k // 2)
        return nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c, affine=False),
            nn.ReLU(),
            nn.Conv2d(c, c, k, 1, k // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c, affine=False),
        )
    return nn.Sequential(  # DilConv(C, C, k, stride, k - 1, 2)
        nn.ReLU(),
        nn.Conv2d(c, c, k, stride, k - 1, dilation=2, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c, affine=False),
    )


class RefCell(nn.Module):
    def __init__(self, steps, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.reduction, self.steps = reduction, steps
        self.preprocess0 = (
            RefFactorizedReduce(c_pp, c) if reduction_prev else _ref_relu_conv_bn(c_pp, c)
        )
        self.preprocess1 = _ref_relu_conv_bn(c_p, c)
        self.ops = nn.ModuleList()  # edge (i, j): node i from state j (0: s0 = h-2, 1: s1 = h-1)
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.ops.append(
                    nn.ModuleList(_ref_op(p, c, stride) or nn.Identity() for p in PRIMITIVES)
                )

    def forward(self, s0, s1, weights):
        states, offset = [self.preprocess0(s0), self.preprocess1(s1)], 0
        for _ in range(self.steps):
            s = 0
            for j, h in enumerate(states):
                mixed = self.ops[offset + j]
                s = s + sum(
                    w * op(h)
                    for w, op, p in zip(weights[offset + j], mixed, PRIMITIVES, strict=True)
                    if p != "none"
                )
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self.steps :], dim=1)


class RefNetwork(nn.Module):
    def __init__(self, c, num_classes, layers, steps=4, stem_multiplier=3, in_channels=3):
        super().__init__()
        c_curr = stem_multiplier * c
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr)
        )
        c_pp, c_p, c_curr = c_curr, c_curr, c
        self.cells, reduction_prev = nn.ModuleList(), False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(RefCell(steps, c_pp, c_p, c_curr, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, steps * c_curr
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x, alphas_normal, alphas_reduce):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            weights = (alphas_reduce if cell.reduction else alphas_normal).softmax(-1)
            s0, s1 = s1, cell(s0, s1, weights)
        return self.classifier(s1.mean(dim=(2, 3)))


def _ref_edge(i: int, j: int) -> str:
    """Our edge of the DARTS code's edge into node i from state j."""
    return f"{i}<-" + ("in1" if j == 0 else "in0" if j == 1 else str(j - 2))


# -- parameter counts -------------------------------------------------------------------------
def _sep(c: int, k: int) -> int:
    return 2 * (c * k * k + c * c)  # (depthwise k x k + pointwise 1x1) x 2; BN affine-free


def _dil(c: int, k: int) -> int:
    return c * k * k + c * c  # depthwise k x k (dilation 2) + pointwise 1x1


def _by_hand(c: int, num_classes: int, layers: int, steps: int = 4) -> int:
    """The parameters of DARTS's Network(c, num_classes, layers), from its op formulas."""
    stem = 3 * 3 * 3 * (3 * c) + 2 * (3 * c)  # conv3x3 and the stem BN's scale and shift
    total, c_pp, c_p, width = stem, 3 * c, 3 * c, c
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        width *= 1 + reduction
        total += c_pp * width + c_p * width  # ReLUConvBN 1x1 or FactorizedReduce: c_in x C each
        edges = sum(2 + n for n in range(steps))
        total += edges * (_sep(width, 3) + _sep(width, 5) + _dil(width, 3) + _dil(width, 5))
        total += reduction * 2 * steps * width * width  # skip at stride 2: FactorizedReduce, C^2
        c_pp, c_p = c_p, steps * width
    return total + c_p * num_classes + num_classes  # the classifier; every cell BN affine-free


def test_the_search_network_has_the_authors_parameter_count():
    """Like with like: every parameter of the network (stem, preprocessing, ops, classifier), α
    apart in both (the DARTS code keeps α outside `parameters()`, ours is the method's)."""
    assert _by_hand(16, 10, LAYERS) == 1_930_618  # the authors' Network(16, 10, 8)
    with torch.device("meta"):
        ours = DartsCellSpace.darts().build_supernet(**AUTHORS)
        ref = RefNetwork(16, 10, LAYERS)
        old = DartsCellSpace().build_supernet(**AUTHORS)
    assert [c.kind for c in ours.cells] == [
        "reduce" if r.reduction else "normal" for r in ref.cells
    ]
    assert _params(ours) == _params(ref) == 1_930_618
    assert _params(old) == 9_350_554  # the BayesNAS network on the same cells, unchanged
    # α: 14 edges x (7 ops + none) per cell type, as DARTS's alphas_normal / alphas_reduce
    module = DARTSModule(DartsCellSpace.darts(), filters=1, cells=1, stages=1)
    assert sum(a.numel() for a in module.alpha) == 2 * 14 * len(PRIMITIVES) == 224


@pytest.mark.parametrize("stride", [1, 2])
def test_each_op_has_the_authors_parameter_count(stride):
    c = 16
    expected = {
        "sep3x3": 2 * (c * 3 * 3 + c * c),  # 800
        "sep5x5": 2 * (c * 5 * 5 + c * c),  # 1312
        "dil3x3": c * 3 * 3 + c * c,  # 400
        "dil5x5": c * 5 * 5 + c * c,  # 656
        "maxpool3x3": 0,  # the pool's BN is affine-free
        "avgpool3x3": 0,
        "identity": 0 if stride == 1 else 2 * c * (c // 2),  # FactorizedReduce: two 1x1 halves
    }
    for op, count in expected.items():
        for ghost in (True, False):  # supernet and child alike
            assert _params(make_darts_op(op, c, stride, ghost)) == count, op
    assert _params(relu_conv_bn(48, c, True)) == 48 * c


# -- equal to the transcription of the authors' network ----------------------------------------
@pytest.mark.slow  # five cells of every op run five times in float64
def test_supernet_equals_the_authors_network_with_the_same_weights_and_alpha():
    """Softmax(α) path weights over every op ("none" contributing zeros): our supernet's logits are
    the DARTS code's, batch statistics in every BN; with ghost batches, each half run alone.
    Network(4, 5, layers=5, steps=2) (reductions at layers 1 and 3): cells=3, stages=3, 2 nodes."""
    torch.manual_seed(0)
    steps, space = 2, EVERY_OP
    ours = space.build_supernet(filters=4, cells=3, stages=3, num_classes=5, in_channels=3)
    ref = RefNetwork(4, 5, layers=5, steps=steps)
    ours, ref = ours.double().train(), ref.double().train()
    edges = [(i, j) for i in range(steps) for j in range(2 + i)]  # the DARTS code's edge order
    with torch.no_grad():
        ours.stem[1].weight.uniform_(0.5, 1.5)  # the one affine BN
        ours.stem[1].bias.uniform_(-0.5, 0.5)
        pairs = [(ref.stem, ours.stem), (ref.classifier, ours.classifier)]
        for rc, oc in zip(ref.cells, ours.cells, strict=True):
            pairs += [(rc.preprocess0, oc.preprocess[1]), (rc.preprocess1, oc.preprocess[0])]
            for k, (i, j) in enumerate(edges):
                for p, op in zip(PRIMITIVES, rc.ops[k], strict=True):
                    if p != "none":
                        pairs.append((op, oc.edges[_ref_edge(i, j)][DARTS_OPS[p]]))
        for a, b in pairs:
            theirs, mine = list(a.parameters()), list(b.parameters())
            assert [t.shape for t in theirs] == [m.shape for m in mine]
            for t, m in zip(theirs, mine, strict=True):
                t.copy_(m)
    gen = torch.Generator().manual_seed(1)
    alphas = [torch.randn(len(edges), len(PRIMITIVES), generator=gen).double() for _ in range(2)]
    weights = {}  # ours: the probabilities of the space's ops, "none" left out
    for cell, alpha in zip(("normal", "reduce"), alphas, strict=True):
        probs = alpha.softmax(-1)
        for k, (i, j) in enumerate(edges):
            row = [probs[k, PRIMITIVES.index(OUR_OPS[op])] for op in space.ops]
            weights[f"{cell}/{_ref_edge(i, j)}"] = torch.stack(row).unsqueeze(0)
    x = torch.randn(8, 3, 8, 8, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ours(x, weights, None), ref(x, *alphas), **F64)
    halves = torch.cat([ref(x[:4], *alphas), ref(x[4:], *alphas)])
    torch.testing.assert_close(ours(x, weights, 4), halves, **F64)


# -- searched = retrained -----------------------------------------------------------------------
def _layers(module: nn.Module) -> list[tuple]:
    """The layers of `module` in order with their hyper-parameters; batch norms without `affine`
    (the search network's are affine-free, the evaluation network's affine, as in the DARTS code)."""
    out = []
    for m in module.modules():
        if isinstance(m, FactorizedReduction):
            out.append(("factorized_reduce", m.relu, m.names, m.pad_output))
        elif isinstance(m, nn.Conv2d):
            out.append(
                (
                    "conv",
                    m.in_channels,
                    m.out_channels,
                    m.kernel_size,
                    m.stride,
                    m.padding,
                    m.dilation,
                    m.groups,
                    m.bias is not None,
                )
            )
        elif isinstance(m, nn.BatchNorm2d):
            out.append(("bn", m.num_features, m.eps))
        elif isinstance(m, nn.ReLU):
            out.append(("relu",))
        elif isinstance(m, nn.MaxPool2d):
            out.append(("maxpool", m.kernel_size, m.stride, m.padding))
        elif isinstance(m, nn.AvgPool2d):
            out.append(("avgpool", m.kernel_size, m.stride, m.padding, m.count_include_pad))
        elif isinstance(m, nn.Identity | Identity):
            out.append(("identity",))
        elif isinstance(m, nn.Linear):
            out.append(("linear", m.in_features, m.out_features))
        else:
            assert list(m.children()), f"no description of layer {m}"
    return out


def _affine(module: nn.Module) -> set[bool]:
    return {m.affine for m in module.modules() if isinstance(m, nn.BatchNorm2d)}


@pytest.mark.parametrize("which", ["every op", "DARTS_V2"])
def test_the_evaluation_network_builds_the_searched_ops(which):
    """For every op on every edge (the all-on architecture) and for DARTS_V2, the op DARTS's
    evaluation network builds is the search network's: same layers, kernels, strides, paddings,
    dilations, groups and channels, at the same place (stem, each cell's preprocessing and edges,
    classifier). As in the DARTS code, the search network's cell BNs are affine-free and the
    evaluation network's affine, and the search network puts an affine-free BN after each pool
    (MixedOp), the evaluation network none."""
    space = DartsCellSpace.darts()
    arch = space.all_on() if which == "every op" else space.from_genotype(DARTS_V2)
    with torch.device("meta"):
        searched = space.build_child(arch, **AUTHORS)
        retrained = DartsEvalNetwork(arch, 16, LAYERS, 10, 3, auxiliary=False, drop_path=0.0)
    assert _layers(searched.stem) == _layers(retrained.stem) and _affine(searched.stem) == {True}
    assert _layers(searched.classifier) == _layers(retrained.classifier)
    assert len(searched.cells) == len(retrained.cells) == LAYERS
    compared = set()
    for s, r in zip(searched.cells, retrained.cells, strict=True):
        assert s.kind == r.kind
        assert _layers(s.preprocess[0]) == _layers(r.preprocess0)  # h-1
        assert _layers(s.preprocess[1]) == _layers(r.preprocess1)  # h-2
        assert set(s.edges) == set(r.edges)
        channels = r.preprocess0[1].out_channels
        for edge in s.edges:
            assert set(s.edges[edge]) == set(r.edges[edge])
            for op in s.edges[edge]:
                mine, theirs = s.edges[edge][op], r.edges[edge][op]
                searched_layers = _layers(mine)
                if op.endswith("pool3x3"):  # the search network's BN after a pool
                    assert searched_layers[-1] == ("bn", channels, 1e-5)
                    searched_layers = searched_layers[:-1]
                assert searched_layers == _layers(theirs), (s.kind, edge, op)
                assert _affine(mine) <= {False} and _affine(theirs) <= {True}
                compared.add((s.kind, op, _stride(theirs)))
    if which == "every op":  # every op at stride 1, and at stride 2 on a reduction cell's inputs
        kinds = {"normal": {1}, "reduce": {1, 2}}
        assert compared == {(k, op, st) for k in kinds for op in BAYESNAS_OPS for st in kinds[k]}


def _stride(op: nn.Module) -> int:
    """2 when a layer of `op` has stride 2 (or it is a factorized reduction), else 1."""
    strides = {getattr(m, "stride", 1) for m in op.modules()} | {1}
    reduces = isinstance(op, FactorizedReduction) or bool(strides - {1, (1, 1)})
    return 2 if reduces else 1


# -- the shared supernet mechanics and the methods on darts_cell ---------------------------------


@pytest.mark.parametrize(
    "check",
    [
        interface.test_supernet_follows_the_interface,
        pytest.param(interface.test_gathered_equals_dense_forward_and_gradients, marks=SLOW),
        interface.test_extracted_child_computes_the_supernet_path,
        interface.test_every_weight_belongs_to_one_declared_path_or_the_trunk,
        interface.test_masked_l2_counts_each_used_path_once_per_architecture,
        interface.test_real_valued_weights_get_the_finite_difference_gradient,
    ],
    ids=lambda check: check.__name__.removeprefix("test_"),
)
def test_the_darts_network_passes_every_supernet_check(check):
    """Ghost batch norm, gathered paths (path dropout's masks, sampled architectures), the child,
    declared paths and masked L2, real-valued path weights (DARTS, GDAS, BayesNAS's switches)."""
    check(SMALL)


def test_a_dead_node_of_a_reduction_cell_has_the_cell_output_shape():
    """Node 0 of the reduction cell has no op on: zeros at half resolution, on odd sizes too."""
    choices = {d.name: ("sep3x3",) for d in SMALL.decisions}
    choices.update({"reduce/0<-in0": (), "reduce/0<-in1": ()})
    child = SMALL.build_child(SMALL.architecture(choices), **TINY).train()
    seen = {}
    child.cells[1].register_forward_hook(lambda m, args, out: seen.setdefault("out", out))
    child(torch.randn(2, 3, 9, 9))
    assert [c.kind for c in child.cells] == ["normal", "reduce", "normal"]
    assert seen["out"].shape == (2, 2 * 2 * TINY["filters"], 5, 5)
    assert not seen["out"][:, : 2 * TINY["filters"]].any()  # node 0: zeros


def _batch(seed: int, n: int = 4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64)
    return x, torch.randint(0, TINY["num_classes"], (n,), generator=g)


@pytest.mark.slow  # double backward through the network
def test_second_order_darts_gradient_on_the_darts_network_equals_autograd():
    """DARTS's finite-difference hypergradient through this network (stride-2 ops, affine-free BN,
    FactorizedReduce) equals float64 autograd of the unrolled objective."""
    torch.manual_seed(0)
    module = DARTSModule(SMALL, order=2, unrolled_eps=1e-5, ghost_size=4, **TINY).double()
    with torch.no_grad():
        for a in module.alpha:
            a.normal_()
    (x, y), (xv, yv) = _batch(0), _batch(1)
    xi, decay = 0.3, 0.01
    estimate = module.unrolled_gradients(x, y, xv, yv, (xi, decay, {}))
    names, params = zip(*module.supernet.named_parameters(), strict=True)

    def loss_at(values, xb, yb):
        out = functional_call(
            module.supernet,
            dict(zip(names, values, strict=True)),
            (xb, module._softmax_weights(), 4),
        )
        return F.cross_entropy(out, yb)

    grads = torch.autograd.grad(loss_at(params, x, y), params, create_graph=True)
    unrolled = [
        p - xi * (g + (decay * p if p.dim() > 1 else 0)) for p, g in zip(params, grads, strict=True)
    ]
    exact = torch.autograd.grad(loss_at(unrolled, xv, yv), list(module.alpha))
    for e, a in zip(estimate, exact, strict=True):
        torch.testing.assert_close(e, a, rtol=1e-4, atol=1e-7)


def test_gdas_runs_the_sampled_op_of_each_ghost_batch_on_the_darts_network():
    """GDAS's hard one-hot weights per ghost batch: each ghost batch's logits are those of the
    child of its sampled cells, and α gets the straight-through gradient."""
    module = GDASModule(SMALL, ghost_size=4, **TINY).double()
    x, _ = _batch(2, 8)
    weights = module.train_path_weights(ghosts=2)
    out = module.supernet(x, weights, 4)
    for g in range(2):
        rows = {d: w[g : g + 1].detach() for d, w in weights.items()}
        child = module.supernet.extract(SMALL.decode(rows), copy_weights=True).double().train()
        torch.testing.assert_close(out[4 * g : 4 * g + 4], child(x[4 * g : 4 * g + 4]), **F64)
    out.square().sum().backward()
    assert all(a.grad is not None and bool(a.grad.abs().sum() > 0) for a in module.alpha)


# -- checkpoints and settings ---------------------------------------------------------------------
def _save(module, path):
    checkpoint = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return load_supernet_module(str(path), torch.device("cpu"))


@pytest.mark.slow  # three modules built, two checkpoints written and read
def test_a_checkpoint_without_a_network_style_restores_the_bayesnas_network(tmp_path):
    """Checkpoints written before `search_space.network` existed hold a spec without it: they
    rebuild the BayesNAS network, weights and outputs; a DARTS-style one records its network."""
    edges = list(dense_edges(2))
    ops = ["sep3x3", "dil3x3", "maxpool3x3", "identity"]
    old_spec = {"name": "darts_cell", "ops": ops, "edges": edges, "reduce_edges": edges, "nodes": 2}
    x, _ = _batch(3)
    for spec, network in ((old_spec, "bayesnas"), ({**old_spec, "network": "darts"}, "darts")):
        torch.manual_seed(0)
        module = OneShotModule(spec, None, ghost_size=4, **TINY).double().eval()
        assert module.hparams["space"] == spec  # the old style's spec is written as before
        loaded = _save(module, tmp_path / f"{network}.ckpt").double()
        assert loaded.space.network == network and loaded.space.spec() == spec
        assert set(loaded.state_dict()) == set(module.state_dict())
        torch.testing.assert_close(loaded.supernet(x, None, 4), module.supernet(x, None, 4), **F64)
    old_keys = {  # names of the BayesNAS network's weights in those checkpoints
        "supernet.stem.weight",
        "supernet.stem_bn.weight",
        "supernet.final_bn.bias",
        "supernet.cells.0.preprocess.0.bn.weight",
        "supernet.cells.0.edges.0<-in0.dil3x3.conv.weight",
        "supernet.cells.0.edges.0<-in0.sep3x3.units.0.conv.weight",
    }
    assert old_keys <= set(OneShotModule(old_spec, None, **TINY).state_dict())
    assert build_space(old_spec).network == "bayesnas"
    # the old style's spec keeps its keys, so its architecture files and ids are those of before
    assert set(DartsCellSpace().spec()) == set(DartsCellSpace.bayesnas().spec()) == set(old_spec)


def test_an_unknown_network_style_is_refused_naming_the_choices():
    with pytest.raises(NasError) as err:
        DartsCellSpace(network="nasnet")
    message = str(err.value)
    assert "search_space.network='nasnet' is unknown; choose 'darts'" in message
    assert "'bayesnas'" in message
