"""Sweeps on Hydra's launcher plugins: a 2-job retraining sweep in parallel local processes
(`hydra/launcher=local`, joblib) and through submitit (`hydra/launcher=slurm_local`, the SLURM
launcher's machinery without a scheduler), then Table 1 from its results; W&B groups the jobs of a
sweep together whichever launcher ran them."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT, compose_config

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


@pytest.fixture(scope="module")
def selection(tmp_path_factory) -> list[Path]:
    """One architecture of the smoke experiments' space in each of two selection groups."""
    from nas.results.selection import write_selection
    from nas.spaces.oneshot_cell import OneShotCellSpace

    space = OneShotCellSpace(num_blocks=2)
    rng = random.Random(0)
    directory = tmp_path_factory.mktemp("selections")
    return [
        Path(write_selection(directory, group, [space.sample(rng)]).read_text().strip())
        for group in ("top", "random")
    ]


def test_slurm_launcher_submits_with_the_hardware_groups_resources(tmp_path, monkeypatch):
    """hydra/launcher=slurm turns trainer.devices into GPUs and tasks per node in the sbatch script
    (rendered by submitit itself; only the call to sbatch is replaced)."""
    import hydra
    from submitit.slurm import slurm

    import train  # noqa: F401  (registers train.yaml's resolvers)

    fake = tmp_path / "bin" / "srun"  # submitit looks for srun before it builds a SLURM executor
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    scripts = []

    class Submitted(Exception):
        pass

    def submit(executor, command):  # instead of running sbatch
        scripts.append(executor._make_submission_file_text(command, "uid"))
        raise Submitted

    monkeypatch.setattr(slurm.SlurmExecutor, "_submit_command", submit)
    overrides = ["experiment=smoke_standalone", "hardware=gpu", "trainer.devices=4"]
    launcher_settings = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"]
    sweep = [f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    cfg = compose_config("train", [*overrides, *launcher_settings, *sweep], tmp_path)
    launcher = hydra.utils.instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    with pytest.raises(Submitted):
        launcher.launch([["arch=a.json"], ["arch=b.json"]], initial_job_idx=0)
    (script,) = scripts  # one job array of two jobs
    for flag in (
        "--array=0-1%2",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",
        "--cpus-per-task=8",
        "--mem=64GB",
        "--time=2880",
        "--partition=gpu",
    ):
        assert f"#SBATCH {flag}\n" in script, script


def _job_group(job: Path) -> str:
    """The W&B group of a job: the logger config's group, from the Hydra state the job ran with."""
    from nas.loggers import sweep_group

    def unresolved(path: Path) -> dict:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)

    group = unresolved(job / ".hydra" / "config.yaml")["logger"]["group"]
    assert group == unresolved(ROOT / "conf" / "logger" / "wandb.yaml")["group"]  # as configured
    hydra = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra
    return sweep_group(hydra.mode, hydra.sweep.dir, hydra.runtime.choices.experiment)


@pytest.mark.slow
# W&B writes offline runs under one launcher only: it costs seconds per job, and which group a job
# gets is decided by its Hydra config (checked for both) before W&B is involved.
@pytest.mark.parametrize(
    ("launcher", "wandb_mode"), [("local", "offline"), ("slurm_local", "disabled")]
)
def test_two_job_sweep_on_a_launcher_gives_table1_and_one_wandb_group(
    launcher, wandb_mode, selection, tmp_path
):
    from nas.report import table1 as collect

    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "experiment=smoke_standalone",
        f"arch={','.join(map(str, selection))}",
        f"hydra/launcher={launcher}",
        f"hydra.sweep.dir={sweep}",
        "logger=wandb",
        f"logger.mode={wandb_mode}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if launcher == "slurm_local":  # really submitted through submitit: one job folder per job
        assert len(list((sweep / ".submitit").glob("*/*_submitted.pkl"))) == 2

    jobs = sorted(p.parent for p in sweep.glob("*/result.json"))
    assert [j.name for j in jobs] == ["0", "1"]
    results = [json.loads((j / "result.json").read_text()) for j in jobs]
    assert [r["group"] for r in results] == ["top", "random"]
    table = tmp_path / "table1.json"
    assert collect.main([str(sweep), "--json", str(table)]) == 0
    rows = {row["group"]: row for row in json.loads(table.read_text())}
    assert set(rows) == {"One-Shot Top", "Random"}
    by_group = {collect.GROUP_LABELS[r["group"]]: r for r in results}
    for label, row in rows.items():
        assert (row["n"], row["filters"]) == (1, 4)
        assert row["params_m_mean"] == pytest.approx(by_group[label]["params"] / 1e6)
        assert row["test_acc_pct_mean"] == pytest.approx(100 * by_group[label]["test_acc"])

    # both jobs log to the sweep's group (experiment + sweep directory), as a job run by Hydra's
    # default launcher would; W&B's own run file holds it
    groups = [_job_group(j) for j in jobs]
    assert groups == ["smoke_standalone-sweep"] * 2
    for job in jobs if wandb_mode == "offline" else []:
        (run,) = (job / "wandb").glob("offline-run-*/run-*.wandb")
        assert b"smoke_standalone-sweep" in run.read_bytes()
