"""ENASModule: the alternation of its two phases, exact resume in each, derive and retrain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from nas.methods.enas.module import ENASModule
from nas.methods.enas.reinforce import Reinforce
from nas.search.checkpoint import load_supernet_module
from nas.spaces import Architecture
from tests.conftest import ROOT, compose_config
from tests.test_resume import _assert_same_end, _last, _train_in_process

SMOKE = ["experiment=smoke_enas"]
# 3 epochs of 4 shared steps (then 3 controller updates each); last.ckpt every 2 steps
COMMON = ["trainer.max_epochs=3", "callbacks.last.every_n_train_steps=2", "dataset.pad=1"]


class KillAtUpdate(Callback):
    """Test helper: SIGKILL right after the controller's update number `update` (from 1)."""

    def __init__(self, update: int) -> None:
        self.update = update

    def setup(self, trainer, pl_module, stage: str) -> None:
        learner, step, count = pl_module.reinforce, pl_module.reinforce.update, [0]

        def update_then_die(*args, **kwargs):
            out = step(*args, **kwargs)
            count[0] += 1
            if count[0] == self.update:
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        learner.update = update_then_die


@pytest.fixture(scope="module")
def enas_reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("enas-reference")
    _train_in_process(run, *SMOKE, *COMMON)
    return run


def test_phases_alternate_in_order_with_their_counts(tmp_path, monkeypatch):
    events: list[str] = []
    shared, update = ENASModule.training_step, Reinforce.update
    validation = ENASModule.validation_step

    def record(name, fn):
        def wrapped(*args, **kwargs):
            events.append(name)
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(ENASModule, "training_step", record("shared", shared))
    monkeypatch.setattr(Reinforce, "update", record("controller", update))
    monkeypatch.setattr(ENASModule, "validation_step", record("val", validation))
    _train_in_process(tmp_path, *SMOKE, "trainer.max_epochs=2")
    # per epoch: a pass over the training split (4 steps), 3 controller updates, then validation
    # (256 images in batches of 32)
    epoch = ["shared"] * 4 + ["controller"] * 3 + ["val"] * 8
    assert events == epoch * 2
    ckpt = _last(tmp_path)
    assert ckpt["global_step"] == 8  # controller updates are not optimizer steps of the trainer
    assert ckpt["module_class"] == "nas.methods.enas.module.ENASModule"
    metrics = (tmp_path / "csv" / "metrics.csv").read_text()
    for key in ("controller/reward", "controller/baseline", "controller/entropy"):
        assert key in metrics
    greedy = Architecture.load(tmp_path / "csv" / "greedy_arch.json")
    assert greedy.space.name == "enas_macro"


def test_controller_phase_learns_from_validation_rewards(tmp_path):
    """Rewards are accuracies of validation minibatches, one per sampled architecture."""
    _train_in_process(tmp_path, *SMOKE)
    module = load_supernet_module(tmp_path / "checkpoints" / "last.ckpt", torch.device("cpu"))
    assert isinstance(module, ENASModule)
    baseline = _last(tmp_path)["reinforce"]["baseline"]
    # 3 updates of 2 rewards in [0, 1] each, from b = 0 with decay 0.99: 0 < b <= 1 - 0.99**6
    assert 0 < baseline <= 1 - 0.99**6 + 1e-9


# Shared phase: killed at step 7 (mid-epoch 1; last.ckpt from step 6). Controller phase: killed after
# update 5, inside epoch 1's controller phase (after step 8; last.ckpt from step 6, since the epoch's
# last step is saved at the epoch's end): the resumed run redoes steps 7-8 and that whole phase.
@pytest.mark.slow
@pytest.mark.parametrize(
    "callback, at, saved_step",
    [("tests.test_resume.KillAt", "step=7", 6), ("tests.test_enas.KillAtUpdate", "update=5", 6)],
)
def test_killed_in_either_phase_and_resumed_equals_uninterrupted(
    tmp_path, enas_reference, callback, at, saved_step
):
    run = tmp_path / "killed"
    overrides = [*SMOKE, *COMMON]
    proc = _train_killed(run, overrides, callback, at)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _last(run)["global_step"] == saved_step
    _train_in_process(run, *overrides, "resume=true")
    _assert_same_end(enas_reference, run)
    ref, res = _last(enas_reference), _last(run)
    assert torch.equal(ref["controller_generator"], res["controller_generator"])
    assert ref["reinforce"]["baseline"] == res["reinforce"]["baseline"]


def _train_killed(run: Path, overrides: list[str], callback: str, at: str):
    """train.py in a subprocess with the kill callback `callback` set to fire `at`."""
    cmd = [
        sys.executable,
        "train.py",
        *overrides,
        f"hydra.run.dir={run}",
        f"+callbacks.kill._target_={callback}",
        f"+callbacks.kill.{at}",
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_derive_with_the_controller_strategy_then_retrain_the_best(tmp_path):
    import search
    import train

    run = tmp_path / "enas"
    _train_in_process(run, *SMOKE)
    ckpt = run / "checkpoints" / "last.ckpt"
    out = tmp_path / "derive"
    cfg = compose_config(
        "search",
        [*SMOKE, f"ckpt={ckpt}", f"out_dir={out}", "strategy=controller", "search.num_archs=6"],
        out,
    )
    paths = search.run(cfg)
    ranking = (out / "ranking.csv").read_text().splitlines()
    assert len(ranking) == 1 + 6
    best = Path(paths["selections"]["top"]).read_text().split()[0]
    arch = Architecture.load(best)
    assert arch.space.name == "enas_macro"
    retrain = tmp_path / "retrain"
    overrides = [
        "experiment=smoke_standalone",
        f"arch={best}",
        "model.cells=2",
        "model.stages=2",
    ]
    train.train(compose_config("train", overrides, retrain))
    result = json.loads((retrain / "result.json").read_text())
    assert result["arch_id"] == arch.id and 0 <= result["val_acc"] <= 1


def test_derive_samples_the_trained_controller_without_learning(tmp_path):
    import random

    from nas.methods.enas.strategy import ControllerStrategy

    _train_in_process(tmp_path, *SMOKE)
    module = load_supernet_module(tmp_path / "checkpoints" / "last.ckpt", torch.device("cpu"))
    strategy = ControllerStrategy(module.space, random.Random(0), module=module)
    assert not strategy.learn
    for (name, a), b in zip(
        strategy.controller.state_dict().items(),
        module.controller.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), name
    before = {k: v.clone() for k, v in strategy.controller.state_dict().items()}
    for _ in range(25):
        strategy.tell(strategy.ask(), 0.5)
    for name, value in strategy.controller.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize(
    "experiment, preset, expected",
    [
        ("cifar_enas_macro", None, {"hidden": 64, "tanh_constant": 1.5, "temperature": None}),
        (
            "cifar_enas_macro",
            "macro_paper",
            {"hidden": 100, "tanh_constant": 2.5, "temperature": 5.0},
        ),
        ("cifar_enas_micro", None, {"tanh_constant": 1.1, "op_tanh_reduce": 2.5}),
        ("cifar_enas_micro", "micro_paper", {"hidden": 100, "op_tanh_reduce": 1.0}),
    ],
)
def test_presets_select_the_controller_settings(tmp_path, experiment, preset, expected):
    overrides = [f"experiment={experiment}"] + ([f"enas_preset={preset}"] if preset else [])
    cfg = compose_config("train", overrides, tmp_path)
    controller = dict(cfg.model.controller)
    assert {k: controller[k] for k in expected} == expected
    if experiment.endswith("micro") and not preset:
        assert dict(controller["op_bias"]) == {"sep3x3": 10.0, "sep5x5": 10.0}
        assert (cfg.model.controller_steps, cfg.model.controller_aggregate) == (30, 10)
