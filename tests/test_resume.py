"""A run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tests.conftest import ROOT, compose_config

# 3 epochs of 4 steps, last.ckpt every 2 steps; augmentation on, so torch's global RNG is in play.
COMMON = [
    "trainer.max_epochs=3",
    "callbacks.last.every_n_train_steps=2",
    "dataset.pad=1",
    "dataset.flip=true",
]
TOTAL_STEPS = 12


class KillAt(Callback):
    """Test helper: the process kills itself with SIGKILL right after training step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _train_in_process(run: Path, *overrides: str) -> dict:
    import train

    train.train(compose_config("train", [*overrides], run))
    return json.loads((run / "result.json").read_text())


def _train_killed(run: Path, step: int, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "train.py",
        *overrides,
        f"hydra.run.dir={run}",
        "+callbacks.kill._target_=tests.test_resume.KillAt",
        f"+callbacks.kill.step={step}",
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _last(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _assert_same_end(reference: Path, resumed: Path) -> None:
    ref, res = _last(reference), _last(resumed)
    assert res["global_step"] == ref["global_step"] == TOTAL_STEPS
    assert ref["state_dict"].keys() == res["state_dict"].keys()
    for name, value in ref["state_dict"].items():
        torch.testing.assert_close(res["state_dict"][name], value, rtol=0, atol=1e-6, msg=name)
    if "mask_generator" in ref:
        assert torch.equal(ref["mask_generator"], res["mask_generator"])
    ref_result = json.loads((reference / "result.json").read_text())
    res_result = json.loads((resumed / "result.json").read_text())
    for key in ("steps", "epochs", "params", "val_acc", "test_acc", "val_loss", "test_loss"):
        assert res_result[key] == pytest.approx(ref_result[key], abs=1e-6), key


@pytest.fixture(scope="module")
def experiments(arch_file) -> dict[str, list[str]]:
    return {
        "supernet": ["experiment=smoke", *COMMON],
        "standalone": ["experiment=smoke_standalone", f"arch={arch_file}", *COMMON],
    }


@pytest.fixture(scope="module")
def references(tmp_path_factory, experiments) -> dict[str, Path]:
    """One uninterrupted run per experiment, shared by the kill tests."""
    runs = {}
    for name, overrides in experiments.items():
        runs[name] = tmp_path_factory.mktemp(f"reference-{name}")
        _train_in_process(runs[name], *overrides)
    return runs


# Step 7: killed mid-epoch, a step after the checkpoint of step 6 (the resumed run redoes step 7 from
# the middle of epoch 1). Step 9: the last checkpoint is the one written at the end of epoch 1.
@pytest.mark.slow
@pytest.mark.parametrize(
    "name, kill_step, saved_step",
    [("supernet", 7, 6), ("supernet", 9, 8), ("standalone", 7, 6)],
)
def test_killed_and_resumed_run_equals_uninterrupted(
    tmp_path, experiments, references, name, kill_step, saved_step
):
    run, overrides = tmp_path / "killed", experiments[name]
    proc = _train_killed(run, kill_step, *overrides)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _last(run)["global_step"] == saved_step
    assert not (run / "result.json").exists()
    _train_in_process(run, *overrides, "resume=true")
    _assert_same_end(references[name], run)


@pytest.mark.slow
def test_resume_through_the_cli_continues_the_run_in_place(tmp_path):
    run = tmp_path / "run"
    overrides = ["experiment=smoke", "trainer.max_epochs=2"]
    _train_in_process(run, *overrides, "trainer.max_epochs=1")
    cmd = [sys.executable, "train.py", *overrides, f"resume={run}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((run / "result.json").read_text())
    assert result["steps"] == 8 and result["epochs"] == 2
    assert _last(run)["global_step"] == 8
    # the first run's curve is kept beside the resumed run's
    assert _logged_steps(run / "csv" / "metrics.part1.csv") == {0, 1, 2, 3}
    assert _logged_steps(run / "csv" / "metrics.csv") == {4, 5, 6, 7}


def _logged_steps(path: Path) -> set[int]:
    with open(path, newline="") as f:
        return {int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")}


def test_atomic_save_keeps_the_old_checkpoint_when_writing_fails(tmp_path, monkeypatch):
    from nas.checkpointing import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # as a kill would: after some bytes, before the rename

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_resumed_loader_continues_mid_epoch(tmp_path):
    from nas.data import SyntheticDataModule

    def loader():
        dm = SyntheticDataModule(train_size=64, val_size=16, test_size=16, batch_size=8)
        return dm.train_dataloader()

    full, first = loader(), loader()
    full.sampler.set_epoch(1)
    first.sampler.set_epoch(1)
    expected = [y.tolist() for _, y in full]
    it = iter(first)
    seen = [next(it)[1].tolist() for _ in range(3)]
    state = first.state_dict()
    assert state["epoch"] == 1 and state["position"] == 24
    resumed = loader()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(1)
    assert seen + [y.tolist() for _, y in resumed] == expected
    assert len(resumed) == len(full)  # Lightning counts the whole epoch; the skipped part included
