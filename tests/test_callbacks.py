"""OneShotPanel callback: curves equal a direct recomputation, all-on KL is 0, train mode restored."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from hydra.utils import instantiate

from nas.callbacks import OneShotPanel
from nas.errors import NasError
from nas.report.panel import draw_panel
from tests.conftest import compose_config

PANEL = [
    "callbacks=analysis",
    "callbacks.oneshot_panel.panel_size=2",
    "callbacks.oneshot_panel.every_n_steps=2",
    "callbacks.oneshot_panel.val_examples=40",
    "callbacks.oneshot_panel.kl_examples=16",
]


def _reference_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """Mean over examples of sum_c (p - q)(log p - log q), written out from the definition."""
    p, q = torch.softmax(p_logits.double(), 1), torch.softmax(q_logits.double(), 1)
    return float(((p - q) * (p.log() - q.log())).sum(1).mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import train

    run = tmp_path_factory.mktemp("panel_run")
    cfg = compose_config("train", ["experiment=smoke", *PANEL], run)
    train.train(cfg)
    return run, cfg


@pytest.mark.slow
def test_curves_match_recomputation_and_logs(trained):
    from nas.search.checkpoint import load_supernet_module

    run, cfg = trained
    curves = json.loads((run / "analysis" / "kl_curves.json").read_text())
    module = load_supernet_module(run / "checkpoints" / "last.ckpt", torch.device("cpu"))
    space = module.space
    panel = draw_panel(space, 2, 0, include_all_on=True)
    assert list(curves) == [a.id for a in panel]  # seeded: the same panel in every run
    allon = space.all_on().id
    for _arch_id, curve in curves.items():
        assert curve["steps"] == [0, 2, 4]  # 4 steps of 1 epoch: start, every 2, end not repeated
        assert len(curve["kl"]) == len(curve["acc"]) == 3
    assert curves[allon]["kl"] == [0.0, 0.0, 0.0]  # the reference against itself

    dm = instantiate(cfg.dataset)
    dm.setup("fit")
    order = torch.randperm(len(dm.train_split), generator=torch.Generator().manual_seed(0))
    x_kl = dm.normalize(dm.train_split.images[order[:16]])
    x_val, y_val = dm.normalize(dm.val_split.images[:40]), dm.val_split.labels[:40]
    ghost = module.eval_ghost_size
    with torch.no_grad():
        ref = module.supernet(x_kl, space.full_masks(1), ghost)
        for arch in panel:
            masks = space.encode([arch])
            kl = _reference_kl(ref, module.supernet(x_kl, masks, ghost))
            acc = float((module.supernet(x_val, masks, ghost).argmax(1) == y_val).float().mean())
            assert curves[arch.id]["kl"][-1] == pytest.approx(kl, rel=1e-4, abs=1e-6)
            assert curves[arch.id]["acc"][-1] == pytest.approx(acc, abs=1e-6)

    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    for arch in panel:
        for key in ("kl", "acc"):
            logged = [
                (int(r["step"]), float(r[f"oneshot/{key}/{arch.id}"]))
                for r in rows
                if r.get(f"oneshot/{key}/{arch.id}")
            ]
            assert [s for s, _ in logged] == curves[arch.id]["steps"]
            assert [v for _, v in logged] == pytest.approx(curves[arch.id][key])


def test_measure_restores_train_mode_and_runs_in_eval(small_space):
    from nas.data import SyntheticDataModule
    from nas.modules import OneShotModule

    module = OneShotModule(small_space, filters=4, cells=2, stages=2, ghost_size=8)
    dm = SyntheticDataModule(batch_size=16, eval_batch_size=32, train_size=64, val_size=32)
    callback = OneShotPanel(panel_size=2, val_examples=32, kl_examples=16)
    trainer = type("T", (), {"datamodule": dm})()
    callback.setup(trainer, module, "fit")
    modes = []
    module.supernet.register_forward_hook(lambda m, i, o: modes.append(m.training))
    for was_training in (True, False):
        module.train(was_training)
        values = callback.measure(module)
        assert module.training is was_training and not any(modes)
        assert values[small_space.all_on().id]["kl"] == 0.0
        assert all(0.0 <= v["acc"] <= 1.0 and v["kl"] >= 0.0 for v in values.values())


def test_bad_settings_are_clear():
    with pytest.raises(NasError, match="every_n_steps"):
        OneShotPanel(every_n_steps=0)
    with pytest.raises(NasError, match="not both 0"):
        OneShotPanel(val_examples=0, kl_examples=0)


def test_panel_is_seeded_distinct_and_ends_with_all_on(small_space):
    a = draw_panel(small_space, 5, panel_seed=3)
    assert a == draw_panel(small_space, 5, panel_seed=3)
    assert a != draw_panel(small_space, 5, panel_seed=4)
    assert len(set(a)) == 6 and a[-1] == small_space.all_on()
    assert draw_panel(small_space, 5, 3, include_all_on=False) == a[:-1]
