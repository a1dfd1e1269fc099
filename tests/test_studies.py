"""The studies in miniature: the numbers they write equal reference computations."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from scipy import stats as sps

from nas.report.studies.correlation import correlation_study
from nas.report.studies.curves import kl_curves_study
from nas.report.studies.dropout import dropout_study
from nas.report.studies.kl_accuracy import kl_accuracy_study
from nas.report.studies.report import report_study
from nas.results.store import ResultsStore
from nas.spaces import Architecture
from tests.conftest import compose_config

NETWORK = {"filters": 4, "cells": 2, "stages": 2, "num_classes": 10, "in_channels": 3}


def _checkpoint(path: Path, space, dropout_rate: float) -> Path:
    """A real (untrained) supernet checkpoint with plain hyperparameters, as train.py writes."""
    from nas.modules import OneShotModule

    module = OneShotModule(
        space, {"name": "path_dropout", "rate": dropout_rate}, ghost_size=8, **NETWORK
    )
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def _store(path: Path, ckpt: Path, archs, accs) -> Path:
    with ResultsStore(path, space=archs[0].space, checkpoint=str(ckpt)) as db:
        for arch, acc in zip(archs, accs, strict=True):
            db.add({"arch": arch, "oneshot_acc": acc})
    return path


@pytest.fixture
def archs(small_space):
    rng, out = random.Random(0), []
    while len(out) < 12:
        arch = small_space.sample(rng)
        if arch not in out:
            out.append(arch)
    return out


def _fake_runs(root: Path, accs: dict[str, list[float]]) -> None:
    for arch_id, values in accs.items():
        for seed, acc in enumerate(values):
            run = root / f"{arch_id}-{seed}"
            run.mkdir(parents=True)
            result = {"kind": "StandaloneModule", "arch_id": arch_id, "test_acc": acc}
            (run / "result.json").write_text(json.dumps(result))


def test_correlation_and_dropout_studies(tmp_path, small_space, archs):
    import study

    ckpt = _checkpoint(tmp_path / "r01.ckpt", small_space, 0.1)
    accs = [0.1 + 0.05 * i for i in range(12)]
    store = _store(tmp_path / "s" / "results.sqlite", ckpt, archs, accs)
    out = tmp_path / "corr"
    cfg = compose_config(
        "study",
        ["study=correlation_pick", f"study.store={store}", f"study.out_dir={out}",
         "study.num_buckets=3", "study.per_bucket=2", "study.num_archs=12"],
        out,
    )  # fmt: skip
    assert study.run(cfg)["count"] == 6
    picks = json.loads((out / "picks.json").read_text())
    assert picks["dropout_rate"] == 0.1
    assert [p["bucket"] for p in picks["archs"]] == [0, 0, 1, 1, 2, 2]
    files = (out / "picks.txt").read_text().split()
    assert [Architecture.load(f).id for f in files] == [p["arch_id"] for p in picks["archs"]]
    assert all(
        Path(f).name.startswith(f"bucket{p['bucket']}_")
        for f, p in zip(files, picks["archs"], strict=True)
    )

    # stand-alone: monotone in one-shot accuracy except one swapped pair -> tau = 1 - 2/15
    ids = [p["arch_id"] for p in picks["archs"]]
    means = [0.90, 0.91, 0.93, 0.92, 0.94, 0.95]
    runs = {i: [m - 0.01, m + 0.01] for i, m in zip(ids, means, strict=True)}
    runs[ids[-1]] = [means[-1]]  # one finished run: a mean, but no spread
    _fake_runs(tmp_path / "runs", runs)
    result = correlation_study(str(out / "picks.json"), [str(tmp_path / "runs")], str(out))
    numbers = json.loads((out / "correlation.json").read_text())
    assert numbers["stats"]["kendall_tau"] == pytest.approx(13 / 15)
    assert result["stats"]["kendall_tau"] == pytest.approx(13 / 15)
    x = [p["oneshot_acc"] for p in picks["archs"]]
    assert numbers["stats"]["spearman"] == pytest.approx(sps.spearmanr(x, means).statistic)
    assert [a["standalone_mean"] for a in numbers["archs"]] == pytest.approx(means)
    stds = [a["standalone_std"] for a in numbers["archs"]]
    assert stds[:5] == pytest.approx([0.01 * 2**0.5] * 5) and stds[5] is None
    assert (out / "correlation.png").stat().st_size > 1000

    # dropout: two more supernets (rates from their checkpoints) scoring the same architectures
    stores = []
    for rate, sign in ((0.3, -1.0), (1e-6, 1.0)):
        c = _checkpoint(tmp_path / f"{rate}.ckpt", small_space, rate)
        stores.append(
            str(_store(tmp_path / f"{rate}" / "r.sqlite", c, archs, [sign * a for a in accs]))
        )
    dropout_study(stores, str(out / "correlation.json"), str(tmp_path / "dropout"))
    drop = json.loads((tmp_path / "dropout" / "dropout.json").read_text())
    assert [p["rate"] for p in drop["panels"]] == [1e-6, 0.3]
    assert drop["kendall_tau"] == pytest.approx({"1e-06": 13 / 15, "0.3": -13 / 15})
    assert (tmp_path / "dropout" / "dropout.png").stat().st_size > 1000


def test_kl_accuracy_study_matches_direct_kl(tmp_path, small_space, archs):
    from nas.data import SyntheticDataModule
    from nas.search.checkpoint import load_supernet_module

    ckpt = _checkpoint(tmp_path / "c.ckpt", small_space, 0.1)
    with_allon = [*archs[:5], small_space.all_on()]
    accs = [0.2, 0.6, 0.4, 0.3, 0.5, 0.9]
    store = _store(tmp_path / "results.sqlite", ckpt, with_allon, accs)
    dm = SyntheticDataModule(batch_size=16, train_size=64, val_size=32, test_size=32)
    kl_accuracy_study(str(ckpt), str(store), dm, str(tmp_path / "kl"), num_archs=6, examples=16)
    numbers = json.loads((tmp_path / "kl" / "kl_vs_accuracy.json").read_text())

    module = load_supernet_module(str(ckpt), torch.device("cpu"))
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    x = dm.normalize(dm.train_split.images[order[:16]])
    with torch.no_grad():
        p = torch.softmax(module.supernet(x, None, 8).double(), 1)
        for row in numbers["archs"]:
            arch = next(a for a in with_allon if a.id == row["arch_id"])
            q = torch.softmax(module.supernet(x, small_space.encode([arch]), 8).double(), 1)
            kl = float(((p - q) * (p.log() - q.log())).sum(1).mean())
            assert row["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-7)
    assert next(r for r in numbers["archs"] if r["arch_id"] == small_space.all_on().id)["kl"] == 0
    kls, oneshot = [r["kl"] for r in numbers["archs"]], [r["oneshot_acc"] for r in numbers["archs"]]
    assert numbers["stats"]["kendall_tau"] == pytest.approx(sps.kendalltau(kls, oneshot).statistic)


def test_kl_curves_and_report(tmp_path, monkeypatch):
    curves = {
        "a": {"steps": [0, 10, 20], "kl": [0.0, 2.0, 0.1], "acc": [0.1, 0.5, 0.9]},
        "b": {"steps": [0, 10, 20], "kl": [0.0, 3.0, 0.5], "acc": [0.1, 0.4, 0.5]},
        "c": {"steps": [0, 10, 20], "kl": [0.0, 4.0, 0.9], "acc": [0.1, 0.2, 0.1]},
    }
    (tmp_path / "run" / "analysis").mkdir(parents=True)
    (tmp_path / "run" / "analysis" / "kl_curves.json").write_text(json.dumps(curves))
    kl_curves_study(str(tmp_path / "run"), str(tmp_path / "curves"))
    numbers = json.loads((tmp_path / "curves" / "kl_curves.json").read_text())
    assert numbers["a"] == {"final_step": 20, "final_kl": 0.1, "max_kl": 2.0, "final_acc": 0.9}
    assert numbers["stats"]["kendall_tau"] == pytest.approx(-1.0)  # low final KL, high accuracy

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "report"
    result = report_study([str(tmp_path / "curves")], str(out), wandb=True, wandb_mode="offline")
    page = (out / "report.md").read_text()
    assert "KL over training (Fig. 7)" in page and "../curves/kl_curves.png" in page
    assert "kendall_tau" in page and "-1" in page
    assert result["wandb"] and list((out / "wandb").glob("offline-run-*"))


def test_search_results_and_figures_go_to_wandb_only_with_a_run(tmp_path, monkeypatch, archs):
    from nas.report import wandb_log
    from nas.results.outputs import plot_histogram

    monkeypatch.setenv("WANDB_SILENT", "true")
    store = ResultsStore(tmp_path / "results.sqlite")
    for i, arch in enumerate(archs[:4]):
        store.add({"arch": arch, "oneshot_acc": 0.1 * i, "params": 10 + i, "macs": 100 + i})
    png = plot_histogram([0.0, 0.1, 0.2, 0.3], tmp_path / "hist.png")
    if wandb_log.active_run() is None:
        assert not wandb_log.log_search_results(store) and not wandb_log.log_figures({"f": png})
    run = wandb_log.start_run("oneshot-nas-test", "search", str(tmp_path), mode="offline")
    try:
        assert wandb_log.log_search_results(store) and wandb_log.log_figures({"hist": png})
        assert run.summary["search/best"] == pytest.approx(0.3)
    finally:
        run.finish()
    store.close()
