"""FairNAS's step (strict fairness): m models on one batch, one update, checked against m separate
backward passes on a tiny NB201 supernet in float64.

The paper's Algorithm 1 accumulates the m models' gradients before one update, and its weight decay
is the optimizer's, applied once per update: so the packed step must equal the sum of the m models'
cross-entropy gradients plus the L2 gradient taken once. `losses=mean` and `decay=per_model` (the
rule before, kept for the ablation in docs/quality.md) are checked against their own references.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nas.errors import NasError
from nas.methods.fewshot.module import SplitSampler
from nas.modules import OneShotModule
from nas.samplers import FairSampler, build_sampler
from nas.samplers.base import once_per_step
from nas.spaces import build_space

L2 = 1e-2
GHOST, BATCH = 4, 8  # two ghost batches per model
NETWORK = {"filters": 4, "cells": 2, "stages": 2, "num_classes": 5, "ghost_size": GHOST}


@pytest.fixture(scope="module")
def nb201():
    return build_space({"name": "nb201"})


def _grads(module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def _packed_step(module, sampler, x, y, state) -> dict[str, torch.Tensor]:
    """The gradient of one training step of `module` with `sampler` (its generator at `state`)."""
    module.sampler = sampler
    module.zero_grad()
    module.mask_generator.set_state(state)
    module.sampled_loss(x, y, 0.0)["loss"].backward()
    return _grads(module)


def _reference(module, nb201, x, y, state) -> dict[str, dict[str, torch.Tensor]]:
    """Per model, separately: its cross-entropy gradient, and the gradient of 0.5·l2·Σ‖w‖² over the
    conv/linear weights of its own architecture; and that L2 gradient over every weight the step
    trains, once. Written from the definitions, not through the training module's loss."""
    m = FairSampler().copies(nb201)
    module.mask_generator.set_state(state)
    weights = FairSampler().sample(nb201, BATCH // GHOST, 0.0, module.mask_generator)
    paths = module.supernet.parameter_paths()
    params = dict(module.supernet.named_parameters())
    ce = {name: torch.zeros_like(p) for name, p in params.items()}
    own_l2 = {name: torch.zeros_like(p) for name, p in params.items()}
    used = set()
    for model in range(m):
        rows = slice(model * BATCH // GHOST, (model + 1) * BATCH // GHOST)
        single = {k: w[rows] for k, w in weights.items()}
        module.zero_grad()
        F.cross_entropy(module.supernet(x, single, GHOST), y).backward()
        for name, p in params.items():
            if p.grad is not None:
                ce[name] += p.grad
        arch = nb201.decode(single, 0)
        mine = [
            n
            for n, p in params.items()
            if p.dim() > 1 and paths[n] in module.supernet.paths_used(arch)
        ]
        used.update(mine)
        for name in mine:
            own_l2[name] += L2 * params[name].detach()  # d/dw of 0.5·l2·‖w‖²
    once = {
        n: (L2 * params[n].detach() if n in used else torch.zeros_like(params[n])) for n in params
    }
    return {"ce": ce, "own_l2": own_l2, "once_l2": once}


def test_fair_step_equals_m_backward_passes_summed_with_decay_once(nb201):
    """sum (default): Σ_i ∇CE_i + l2·w once; mean: (1/m)·Σ_i ∇CE_i + l2·w once; per_model:
    Σ_i (∇CE_i + l2·w over model i's weights), the trunk decayed m times."""
    torch.manual_seed(0)
    module = OneShotModule(nb201, FairSampler(), l2=L2, **NETWORK).double()
    x = torch.randn(BATCH, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (BATCH,))
    state = module.mask_generator.get_state()
    ref = _reference(module, nb201, x, y, state)
    m = FairSampler().copies(nb201)
    expected = {
        ("sum", "once"): {n: ref["ce"][n] + ref["once_l2"][n] for n in ref["ce"]},
        ("mean", "once"): {n: ref["ce"][n] / m + ref["once_l2"][n] for n in ref["ce"]},
        ("sum", "per_model"): {n: ref["ce"][n] + ref["own_l2"][n] for n in ref["ce"]},
    }
    for (losses, decay), want in expected.items():
        got = _packed_step(module, FairSampler(losses, decay), x, y, state)
        # every weight of every op was trained: strict fairness on NB201 (m = 5 = every fan-in)
        assert got.keys() == {f"supernet.{n}" for n in want}, (losses, decay)
        for name, grad in want.items():
            torch.testing.assert_close(got[f"supernet.{name}"], grad, rtol=1e-9, atol=1e-12)

    # the difference the fix makes: the trunk (stem, reductions, classifier) decayed once, not m
    # times; each op's weights, trained by one model, decayed once either way
    paths = module.supernet.parameter_paths()
    trunk = next(n for n, p in module.supernet.named_parameters() if p.dim() > 1 and paths[n] == ())
    op = next(n for n, p in module.supernet.named_parameters() if p.dim() > 1 and paths[n] != ())
    torch.testing.assert_close(ref["own_l2"][trunk], m * ref["once_l2"][trunk])
    torch.testing.assert_close(ref["own_l2"][op], ref["once_l2"][op])


def test_once_per_step_marks_a_path_used_by_any_model_once():
    """3 models x 2 ghost batches, 2 options: option a used by 2 models, b by 1 -> both on in every
    ghost batch of the union; one copy is returned as is."""
    rows = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    union = once_per_step({"d": rows}, 3)["d"]
    assert union.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert once_per_step({"d": rows}, 1)["d"] is rows


def test_decay_once_counts_a_twice_trained_option_once():
    """A 2-option decision with m = 5 trains one option 3 times and the other 2; the decay marks
    each of them once (fraction 1 in the masked L2), per_model 3 and 2 times (fractions 3/5, 2/5
    of the 5 models' rows, x 5 models)."""
    space = build_space({"name": "nb201"})
    pair = type(space.decisions[0])("pair", ("a", "b"), 1, 1)

    class Mixed:
        name = "mixed"
        decisions = (space.decisions[0], pair)

    weights = FairSampler().sample(Mixed, 2, 0.0, torch.Generator().manual_seed(5))
    once = FairSampler().loss_terms(Mixed, weights)
    assert once.ce_scale == 5.0 and once.l2_scale == 1.0
    assert (once.decayed["pair"] == 1).all() and (once.decayed[space.decisions[0].name] == 1).all()
    per_model = FairSampler(decay="per_model").loss_terms(Mixed, weights)
    assert per_model.l2_scale == 5.0 and per_model.decayed is weights
    assert sorted((5 * per_model.decayed["pair"].mean(0)).tolist()) == [2.0, 3.0]
    mean = FairSampler(losses="mean").loss_terms(Mixed, weights)
    assert (mean.ce_scale, mean.l2_scale) == (1.0, 1.0)


def test_fair_options_round_trip_and_bad_values_are_refused(nb201):
    sampler = FairSampler("mean", "per_model")
    assert sampler.spec() == {"name": "fair", "losses": "mean", "decay": "per_model"}
    again = build_sampler(sampler.spec())
    assert (again.losses, again.decay) == ("mean", "per_model")
    old = build_sampler({"name": "fair"})  # a checkpoint written before the options: the paper's
    assert (old.losses, old.decay) == ("sum", "once")
    with pytest.raises(NasError, match=r"sampler.losses='avg' must be one of \['sum', 'mean'\]"):
        FairSampler(losses="avg")
    with pytest.raises(
        NasError, match=r"sampler.decay='twice' must be one of \['once', 'per_model'"
    ):
        FairSampler(decay="twice")


def test_few_shot_split_sampler_keeps_the_fair_loss(nb201):
    """A few-shot sub-supernet trained with sampler=fair combines its m models the same way."""
    split = nb201.decisions[0].name
    inner = FairSampler(losses="mean")
    wrapped = SplitSampler(split, "none", inner)
    weights = wrapped.sample(nb201, 2, 0.0, torch.Generator().manual_seed(0))
    got, want = wrapped.loss_terms(nb201, weights), inner.loss_terms(nb201, weights)
    assert (got.ce_scale, got.l2_scale) == (want.ce_scale, want.l2_scale) == (1.0, 1.0)
    assert all(torch.equal(got.decayed[k], want.decayed[k]) for k in want.decayed)


def test_config_options_reach_the_sampler(compose_train):
    from hydra.utils import instantiate

    cfg = compose_train("experiment=quickstart_fairnas", "sampler.losses=mean")
    sampler = instantiate(cfg.sampler)
    assert isinstance(sampler, FairSampler)
    assert (sampler.losses, sampler.decay) == ("mean", "once")
