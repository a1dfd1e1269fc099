"""train.py end to end (smoke experiment) and its one-line errors for bad configuration."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hydra.errors import MissingConfigException

from tests.conftest import ROOT


def _train(cfg):
    import train

    return train.train(cfg)


def test_smoke_run_trains_checkpoints_and_reports(compose_train, tmp_path):
    cfg = compose_train("experiment=smoke")
    val_acc = _train(cfg)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["kind"] == "OneShotModule" and result["steps"] == 4
    assert 0.0 <= val_acc <= 1.0 and result["val_acc"] == pytest.approx(val_acc)
    assert "test_acc" in result
    metrics = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "train/acc", "val/acc"} <= set(metrics)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("sampler.rate=1.5", "dropout rate r=1.5 must lie strictly between 0 and 1"),
        ("sampler.rate=0", "dropout rate r=0 must lie strictly between 0 and 1"),
        ("model.ghost_size=5", "model.ghost_size=5 does not divide dataset.batch_size=16"),
        ("model.filters=0", "model.filters=0 must be an integer >= 1"),
        ("search_space.ops=[identity,conv9x9]", "unknown op(s) ['conv9x9']"),
        ("model.lr=-0.1", "model.lr=-0.1 must be > 0"),
    ],
)
def test_bad_config_stops_with_one_clear_message(compose_train, capsys, override, fragment):
    cfg = compose_train("experiment=smoke", override)
    with pytest.raises(SystemExit) as exit_info:
        _train(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err and "Traceback" not in err


def test_unknown_dataset_lists_the_known_ones(compose_train):
    with pytest.raises(MissingConfigException, match="dataset/imagenet7") as err:
        compose_train("experiment=smoke", "dataset=imagenet7")
    assert "cifar10" in str(err.value.options)


@pytest.mark.slow
def test_cli_prints_error_without_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "experiment=smoke",
            "sampler.rate=2",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "error: dropout rate r=2" in proc.stderr and "Traceback" not in proc.stderr


def test_panel_settings_without_the_panel_callback_are_skipped(compose_train, tmp_path):
    """quickstart tunes the analysis panel; callbacks=default turns it off without an error."""
    from nas.config import build_callbacks

    cfg = compose_train("experiment=quickstart", "callbacks=default")
    assert "oneshot_panel" in cfg.callbacks and "_target_" not in cfg.callbacks.oneshot_panel
    names = sorted(type(c).__name__ for c in build_callbacks(cfg.callbacks))
    assert names == ["LastCheckpoint", "LearningRateMonitor", "ModelCheckpoint"]


def test_wandb_runs_of_a_sweep_share_a_group(compose_train):
    from hydra.types import RunMode

    from nas.loggers import sweep_group

    cfg = compose_train("experiment=smoke", "logger=wandb")
    assert cfg.logger.group == "smoke"  # a single run: its experiment
    assert (
        sweep_group(RunMode.MULTIRUN, "multirun/2026-11-25/04-30-00", "smoke") == "smoke-04-30-00"
    )
