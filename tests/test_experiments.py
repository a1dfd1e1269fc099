"""The paper's CIFAR-10 experiment composes with its settings and runs a step on a tiny archive."""

from __future__ import annotations

import json

import torchvision

from tests.test_data import _trust, _write_cifar


def test_cifar_oneshot_starts_with_paper_network(compose_train, tmp_path, monkeypatch):
    import train

    data = tmp_path / "cifar"
    _write_cifar(data, torchvision.datasets.CIFAR10, per_batch=40)
    _trust(monkeypatch, data, torchvision.datasets.CIFAR10)
    cfg = compose_train(
        "experiment=cifar_oneshot",
        "hardware=cpu",
        "logger=csv",
        "callbacks=default",
        f"dataset.data_dir={data}",
        "dataset.download=false",
        "dataset.val_size=40",
        "dataset.eval_batch_size=40",
        "trainer.max_steps=1",
        "+trainer.limit_val_batches=1",
        "+trainer.val_check_interval=1",
        "test_after_fit=false",
        "trainer.enable_progress_bar=false",
    )
    # the paper's settings are what the experiment asks for
    assert (cfg.model.filters, cfg.model.cells, cfg.model.ghost_size) == (16, 6, 32)
    assert (cfg.sampler.rate, cfg.model.lr, cfg.model.l2) == (0.1, 0.1, 1e-4)
    assert cfg.trainer.max_steps == 1 and cfg.dataset.pad == 4 and cfg.dataset.flip
    # a narrower network for the CPU (the F=16 parameter count is tested in test_supernet.py)
    cfg.model.filters, cfg.model.cells, cfg.dataset.batch_size = 4, 3, 32
    train.train(cfg)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["kind"] == "OneShotModule" and result["steps"] == 1 and "val_acc" in result
    # the data it was trained on, for the reports' check that a truth and a store share it
    assert result["dataset"]["_target_"] == cfg.dataset._target_
    assert result["dataset"]["val_size"] == 40
