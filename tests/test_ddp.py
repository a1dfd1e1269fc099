"""Training with Lightning's DDP: real 2-process runs on the CPU (gloo), against one process.

- A DDP run equals one process over the same global batch with the same per-ghost-batch path
  weights (the processes' batches side by side), and the processes draw different path weights.
- A DDP run killed mid-epoch and resumed ends exactly where an uninterrupted DDP run ends.
- What methods learn outside the trainer's optimizer (ENAS's controller, DARTS's and GDAS's α,
  BayesNAS's switches and priors) stays identical on every process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from nas.data.batching import EpochShuffleSampler, ResumableLoader, ShardSampler
from nas.distributed import ProcessGenerators, rank_seed
from nas.errors import NasError
from nas.samplers.base import Sampler
from nas.samplers.path_dropout import PathDropout
from tests.conftest import ROOT, compose_config

DDP = ["hardware=ddp", "trainer.devices=2"]


class DumpState(Callback):
    """Test helper: each process records the path weights it samples and, at the end, writes them
    with its module's whole state (and REINFORCE's baseline) to `<dir>/rank<r>.pt`."""

    def __init__(self, dir: str) -> None:
        self.dir, self.masks = Path(dir), []

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        sampler, record = pl_module.sampler, self.masks

        def sample(*args, **kwargs):
            weights = type(sampler).sample(sampler, *args, **kwargs)
            record.append({k: v.detach().clone() for k, v in weights.items()})
            return weights

        sampler.sample = sample

    def on_train_end(self, trainer, pl_module) -> None:
        reinforce = getattr(pl_module, "reinforce", None)
        torch.save(
            {
                "masks": self.masks,
                "start": self.start,
                "state": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
                "baseline": None if reinforce is None else reinforce.baseline,
            },
            self.dir / f"rank{trainer.global_rank}.pt",
        )


class EmulatedProcesses(Sampler):
    """Path dropout as `processes` DDP processes draw it, for one process over their global batch:
    the first ghost batches from process 0's stream, the next from process 1's, and so on."""

    name = "emulated_processes"

    def __init__(self, processes: int = 2, seed: int = 0, **path_dropout) -> None:
        self.inner = PathDropout(**path_dropout)
        self.streams = [torch.Generator().manual_seed(rank_seed(seed, r)) for r in range(processes)]

    def sample(self, space, ghosts, progress, generator):
        per = ghosts // len(self.streams)
        parts = [self.inner.sample(space, per, progress, g) for g in self.streams]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _train(run: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", *overrides, f"hydra.run.dir={run}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return proc


def _dump(run: Path) -> list[str]:
    run.mkdir(parents=True, exist_ok=True)
    return ["+callbacks.dump._target_=tests.test_ddp.DumpState", f"+callbacks.dump.dir={run}"]


def _last(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


# -- the pieces, in one process ------------------------------------------------------------------
def test_processes_share_out_each_global_batch_in_blocks():
    size, batch = 50, 4  # 6 global batches of 8 for 2 processes; 2 examples left over
    single = list(EpochShuffleSampler(size, seed=3, batch_size=2 * batch))
    parts = [list(EpochShuffleSampler(size, 3, batch, replicas=2, rank=r)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 24 and len(single) == 48
    for k in range(6):  # global batch k = process 0's batch k, then process 1's
        joined = parts[0][k * batch : (k + 1) * batch] + parts[1][k * batch : (k + 1) * batch]
        assert joined == single[k * 2 * batch : (k + 1) * 2 * batch]
    assert not set(parts[0]) & set(parts[1])


def test_evaluation_shards_cover_every_example_once():
    for size, replicas in [(10, 3), (7, 2), (2, 2), (33, 4)]:
        shards = [list(ShardSampler(size, replicas, r)) for r in range(replicas)]
        assert sum(shards, []) == list(range(size))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_mid_epoch_resume_with_another_number_of_processes_is_refused():
    def loader(replicas):
        sampler = EpochShuffleSampler(64, 0, 8, replicas, 0)
        return ResumableLoader(range(64), batch_size=8, sampler=sampler, drop_last=True)

    two = loader(2)
    it = iter(two)
    next(it)
    state = two.state_dict()
    assert state["replicas"] == 2 and 0 < state["position"] < state["length"]
    with pytest.raises(NasError, match=r"2 process\(es\).*trainer\.devices=2"):
        loader(1).load_state_dict(state)
    loader(2).load_state_dict(state)  # the same number continues
    state["position"] = state["length"]  # an epoch's end: any number of processes may continue
    loader(1).load_state_dict(state)


def test_process_generators_keep_process_zero_and_restore_their_own_stream():
    g = torch.Generator().manual_seed(5)
    generators = ProcessGenerators(lambda: {"mask_generator": (g, 5)})
    generators.seed(None)  # one process: the generator is left as built
    first = torch.rand(3, generator=g)
    assert torch.equal(first, torch.rand(3, generator=torch.Generator().manual_seed(5)))
    checkpoint: dict = {}
    generators.save(None, checkpoint)
    after = torch.rand(3, generator=g)
    generators.load(None, checkpoint)
    assert torch.equal(torch.rand(3, generator=g), after)
    # a DDP checkpoint holds every process's state; process 1 takes its own row
    streams = [torch.Generator().manual_seed(rank_seed(5, r)) for r in range(2)]
    checkpoint["mask_generator_per_process"] = torch.stack([s.get_state() for s in streams])
    expected = torch.rand(3, generator=streams[1])
    process_one = SimpleNamespace(_trainer=SimpleNamespace(world_size=2, global_rank=1))
    generators.load(process_one, checkpoint)
    assert torch.equal(torch.rand(3, generator=g), expected)


# -- real two-process runs -------------------------------------------------------------------------
SMALL = ["experiment=smoke", "trainer.max_epochs=2", "dataset.pad=1", "dataset.flip=true"]


@pytest.mark.slow
def test_ddp_equals_one_process_over_the_global_batch(tmp_path):
    ddp = tmp_path / "ddp"
    # 2 processes x batch 8 (ghost batches of 4, path dropout ramping up) = global batch 16; no
    # augmentation: each process would draw its own crops (exactly as they draw their own masks)
    common = ["experiment=smoke", "trainer.max_epochs=2", "model.ghost_size=4"]
    proc = _train(ddp, *common, *DDP, "dataset.batch_size=8", *_dump(ddp))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(ddp / f"rank{r}.pt", weights_only=False) for r in range(2)]
    steps = len(ranks[0]["masks"])
    assert steps == 8  # 2 epochs of 64 examples in global batches of 16
    # every process draws its own path weights (the same from one stream would be alike)
    differ = [
        any(not torch.equal(m0[k], m1[k]) for k in m0)
        for m0, m1 in zip(ranks[0]["masks"], ranks[1]["masks"], strict=True)
    ]
    assert sum(differ) >= steps // 2

    import train

    one = tmp_path / "one"
    cfg = compose_config(
        "train",
        [
            *common,
            "dataset.batch_size=16",
            "sampler._target_=tests.test_ddp.EmulatedProcesses",
            "+sampler.processes=2",
            "+sampler.seed=0",
        ],
        one,
    )
    train.train(cfg)
    ref, got = _last(one)["state_dict"], _last(ddp)["state_dict"]
    assert ref.keys() == got.keys()
    for name, value in ref.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-5, msg=name)


@pytest.mark.slow
def test_ddp_run_killed_mid_epoch_and_resumed_equals_uninterrupted(tmp_path):
    common = [*SMALL, *DDP, "dataset.batch_size=8", "callbacks.last.every_n_train_steps=2"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _train(reference, *common).returncode == 0
    # 4 steps per epoch: killed after step 7, the last checkpoint is step 6's, mid-epoch 1
    kill = ["+callbacks.kill._target_=tests.test_resume.KillAt", "+callbacks.kill.step=7"]
    proc = _train(killed, *common, *kill)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    saved = _last(killed)
    assert saved["global_step"] == 6
    assert len(saved["mask_generator_per_process"]) == 2
    proc = _train(killed, *common, "resume=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref, res = _last(reference), _last(killed)
    assert res["global_step"] == ref["global_step"] == 8
    for name, value in ref["state_dict"].items():
        torch.testing.assert_close(res["state_dict"][name], value, rtol=0, atol=1e-6, msg=name)
    assert torch.equal(ref["mask_generator_per_process"], res["mask_generator_per_process"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "experiment, learned",
    [
        ("smoke_enas", "controller."),
        ("smoke_gdas", "alpha."),
        ("smoke_bayesnas", "switches."),
    ],
)
def test_learned_samplers_stay_identical_on_every_process(tmp_path, experiment, learned):
    run = tmp_path / "run"
    overrides = [f"experiment={experiment}", "trainer.max_epochs=2", *DDP, "dataset.batch_size=8"]
    proc = _train(run, *overrides, *_dump(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(run / f"rank{r}.pt", weights_only=False) for r in range(2))
    assert r0["state"].keys() == r1["state"].keys()
    for name, value in r0["state"].items():
        assert torch.equal(r1["state"][name], value), name
    assert r0["baseline"] == r1["baseline"]
    # the sampler did learn, from different draws on the two processes
    assert any(
        not torch.equal(value, r0["start"][name])
        for name, value in r0["state"].items()
        if name.startswith(learned)
    )
    if r0["masks"]:  # the methods that draw architectures through a sampler (ENAS)
        assert any(
            not torch.equal(m0[k], m1[k])
            for m0, m1 in zip(r0["masks"], r1["masks"], strict=True)
            for k in m0
        )


def test_too_few_training_examples_for_the_processes_is_one_clear_error():
    from nas.data import SyntheticDataModule

    data = SyntheticDataModule(batch_size=16, train_subset=16)
    data.trainer = SimpleNamespace(world_size=2, global_rank=0)
    with pytest.raises(NasError, match=r"2 processes with batch_size=16 need 32 .* there are 16"):
        data.train_dataloader()
