"""The ranking-quality report: statistics against scipy, interval coverage, top-k, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from nas.errors import NasError
from nas.report.quality.cli import main
from nas.report.stats import bootstrap_statistics, percent_criteria, ranking_quality, top_k
from nas.results.store import ResultsStore
from nas.spaces.nb201 import NB201Space


def _pairs(rho, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, rho * x + np.sqrt(1 - rho**2) * rng.normal(size=n)


def test_statistics_and_intervals_agree_with_scipy():
    x, y = _pairs(0.6, 40, 0)
    q = ranking_quality(x, y, resamples=4000, seed=1)
    assert q["kendall_tau"]["value"] == pytest.approx(sps.kendalltau(x, y).statistic)
    assert q["spearman"]["value"] == pytest.approx(sps.spearmanr(x, y).statistic)
    assert q["pearson"]["value"] == pytest.approx(sps.pearsonr(x, y).statistic)
    for name, fn in (("pearson", sps.pearsonr), ("spearman", sps.spearmanr)):
        ref = sps.bootstrap(
            (x, y),
            lambda a, b, fn=fn: fn(a, b).statistic,
            paired=True,
            vectorized=False,
            n_resamples=4000,
            method="percentile",
            random_state=2,
        ).confidence_interval
        assert q[name]["low"] == pytest.approx(ref.low, abs=0.03)
        assert q[name]["high"] == pytest.approx(ref.high, abs=0.03)
    boot = bootstrap_statistics(x, y, 200, seed=3)
    assert boot["kendall_tau"].shape == (200,)


def test_bootstrap_intervals_cover_the_true_correlation_about_95_percent_of_the_time():
    rho, trials, covered = 0.6, 200, 0
    for seed in range(trials):
        x, y = _pairs(rho, 60, seed)
        boot = bootstrap_statistics(x, y, 500, seed=seed, statistics=["pearson"])["pearson"]
        low, high = np.percentile(boot, [2.5, 97.5])
        covered += low <= rho <= high
    # percentile intervals under-cover slightly at n = 60; 200 trials: binomial sd ~1.6 points
    assert 0.88 <= covered / trials <= 0.99


def test_top_k_precision_overlap_and_regret_by_hand():
    oneshot = [0.9, 0.8, 0.7, 0.6, 0.5]
    truth = [0.70, 0.95, 0.60, 0.90, 0.50]
    assert top_k(oneshot, truth, 1) == {
        "overlap": 0,
        "precision": 0.0,
        "regret": pytest.approx(0.25),
    }
    assert top_k(oneshot, truth, 2) == {"overlap": 1, "precision": 0.5, "regret": 0.0}
    assert top_k(oneshot, truth, 5)["precision"] == 1.0


def test_ning_criteria_by_hand_and_against_brute_force():
    oneshot = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    truth = [0.5, 0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.6, 0.0, 0.4]
    # true ranks of the architectures in score order: 5, 1, 9, 2, 7, 3, 8, 4, 10, 6
    at20 = percent_criteria(oneshot, truth, 20)  # 2 at each end
    assert at20 == {
        "count": 2,
        "precision_top": 0.5,  # {5, 1} holds 1 of the true top 2
        "precision_bottom": 0.5,  # {10, 6} holds 1 of the true bottom 2 {9, 10}
        "best_rank": 0.1,
        "worst_rank": 0.5,
    }
    rng = np.random.default_rng(5)
    for _ in range(20):
        x, y = rng.normal(size=13), rng.normal(size=13)
        for percent in (10, 30, 50, 100):
            count = max(1, round(13 * percent / 100))
            chosen = sorted(range(13), key=lambda i: -x[i])[:count]
            low = sorted(range(13), key=lambda i: -x[i])[13 - count :]
            ranks = {i: 1 + sum(y[j] > y[i] for j in range(13)) for i in range(13)}
            got = percent_criteria(x, y, percent)
            assert got["precision_top"] == sum(ranks[i] <= count for i in chosen) / count
            assert got["precision_bottom"] == sum(ranks[i] > 13 - count for i in low) / count
            assert got["best_rank"] == min(ranks[i] for i in chosen) / 13
            assert got["worst_rank"] == max(ranks[i] for i in chosen) / 13
    with pytest.raises(NasError, match=r"percent=0 must lie in \(0, 100\]"):
        percent_criteria(oneshot, truth, 0)


def _store_and_runs(tmp_path, n=8, unmatched=1, setup=None, run_dataset=None):
    space = NB201Space()
    archs = list(space.enumerate(limit=20000))[:n]
    store_path = tmp_path / "search" / "results.sqlite"
    store_path.parent.mkdir()
    with ResultsStore(store_path, space=space) as store:
        for i, arch in enumerate(archs):
            store.add({"arch": arch, "oneshot_acc": 0.1 * i})
        if setup is not None:
            store.set_meta("evaluation", setup)
            store.set_meta("settings", {"eval_batch_size": 256, "ghost_size": 32})
    for i, arch in enumerate([*archs, *list(space.enumerate(limit=20000))[-unmatched:]]):
        run = tmp_path / "multirun" / str(i)
        run.mkdir(parents=True)
        result = {"kind": "StandaloneModule", "arch_id": arch.id, "test_acc": 0.5 + 0.05 * (i % n)}
        if run_dataset is not None and i:  # the first run: written before runs recorded their data
            result["dataset"] = run_dataset
        (run / "result.json").write_text(json.dumps(result))
    return store_path


FASHION = {"_target_": "nas.data.FashionMNISTDataModule", "data_dir": "/data/f", "val_size": 300}
SETUP = {"checkpoint_sha256": "ab" * 32, "dataset": FASHION, "val_images": [300, 1, 28, 28]}


def test_report_states_its_evaluation_setup_and_refuses_runs_on_other_data(tmp_path, capsys):
    # retrained with other split sizes and batch size on the same images: counted
    same = {**FASHION, "val_size": 0, "batch_size": 64}
    store = _store_and_runs(tmp_path, setup=SETUP, run_dataset=same)
    truth = str(tmp_path / "multirun")
    assert main(["--store", str(store), "--truth", truth, "--resamples", "100"]) == 0
    out, err = capsys.readouterr()
    line = (
        "Evaluation setup: FashionMNISTDataModule (/data/f), validation images 300x1x28x28, "
        "checkpoint sha256 abababababab, eval_batch_size=256, ghost_size=32."
    )
    assert line in out and line in (tmp_path / "search/quality/quality.md").read_text()
    assert "warning: 1 run(s) do not record their dataset" in err
    # retrained on digits: refused, naming the run and both datasets, nothing written
    other = tmp_path / "other"
    other.mkdir()
    digits = {"_target_": "nas.data.DigitsDataModule"}
    _store_and_runs(other, setup=SETUP, run_dataset=digits)
    assert (
        main(["--store", str(store), "--truth", str(other / "multirun"), "--out", str(other / "q")])
        == 2
    )
    err = capsys.readouterr().err
    assert "was trained on other data than results store" in err
    assert "_target_: 'nas.data.FashionMNISTDataModule' -> 'nas.data.DigitsDataModule'" in err
    assert "data_dir: '/data/f' -> None" in err and not (other / "q").exists()


def test_report_matches_runs_to_the_store_and_writes_its_files(tmp_path, capsys):
    store = _store_and_runs(tmp_path)
    assert (
        main(["--store", str(store), "--truth", str(tmp_path / "multirun"), "--resamples", "200"])
        == 0
    )
    out = tmp_path / "search" / "quality"
    report = json.loads((out / "quality.json").read_text())
    assert report["n"] == 8 and len(report["unmatched_runs"]) == 1
    assert report["spearman"]["value"] == pytest.approx(1.0)  # truth rises with the score
    assert report["top"]["1"]["regret"] == 0.0
    assert (out / "quality.png").stat().st_size > 0
    assert "Kendall τ" in (out / "quality.md").read_text()
    assert "| P@top 50% | 1.00 |" in (out / "quality.md").read_text()  # truth rises with the score
    assert report["percent"]["10"] == {
        "count": 1, "precision_top": 1.0, "precision_bottom": 1.0, "best_rank": 0.125,
        "worst_rank": 0.125,
    }  # fmt: skip
    assert "matched no architecture" in capsys.readouterr().out


def test_runs_of_another_search_are_refused_with_a_clear_message(tmp_path, capsys):
    store = _store_and_runs(tmp_path)
    other = tmp_path / "other"
    run = other / "0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(
        json.dumps({"kind": "StandaloneModule", "arch_id": "x", "test_acc": 0.5})
    )
    assert main(["--store", str(store), "--truth", str(other)]) == 2
    assert "only 0 architecture(s) of results store" in capsys.readouterr().err
    with pytest.raises(NasError, match="level"):
        ranking_quality([1, 2, 3], [1, 2, 3], level=1.5)


def test_stratified_sample_takes_the_same_number_from_every_quantile_bucket(tmp_path):
    from nas.report.quality.sample import main as sample_main
    from nas.report.quality.sample import stratified_rows

    rows = [{"arch_id": f"a{i:02d}", "oneshot_acc": (i**3) / 1000} for i in range(20)]  # skewed
    chosen = stratified_rows(rows, 8, 4, seed=0)
    ranked = sorted(rows, key=lambda r: -r["oneshot_acc"])
    bucket = {r["arch_id"]: i * 4 // 20 for i, r in enumerate(ranked)}
    assert sorted(bucket[r["arch_id"]] for r in chosen) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert stratified_rows(rows, 8, 4, seed=0) == chosen  # seeded
    store = _store_and_runs(tmp_path)
    assert sample_main(["--store", str(store), "--n", "4", "--buckets", "2"]) == 0
    listing = (store.parent / "selections" / "stratified.txt").read_text().split()
    assert len(listing) == 4
    assert sample_main(["--store", str(store), "--n", "99"]) == 2


@pytest.mark.slow
def test_report_to_wandb_writes_an_offline_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    store = _store_and_runs(tmp_path)
    out = tmp_path / "q"
    args = ["--store", str(store), "--truth", str(tmp_path / "multirun"), "--out", str(out)]
    assert (
        main([*args, "--resamples", "200", "--wandb", "oneshot-nas", "--wandb-mode", "offline"])
        == 0
    )
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_quality_study_config_writes_the_same_report(tmp_path):
    import study
    from tests.conftest import compose_config

    store = _store_and_runs(tmp_path)
    overrides = [
        "study=quality",
        f"study.store={store}",
        f"study.truth=[{tmp_path / 'multirun'}]",
        "study.resamples=200",
    ]
    outputs = study.run(compose_config("study", overrides, tmp_path))
    report = json.loads((tmp_path / "search" / "quality" / "quality.json").read_text())
    assert outputs["n"] == report["n"] == 8
    assert outputs["spearman"] == report["spearman"] and report["spearman"]["value"] == 1.0


def test_every_stand_alone_kind_counts_and_skipped_runs_are_named(tmp_path, capsys):
    from nas.report.runs import finished_standalone_runs

    runs = {
        "child": {"kind": "StandaloneModule", "arch_id": "a1", "test_acc": 0.9},
        "darts_eval": {"kind": "DartsEvalModule", "arch_id": "a2", "test_acc": 0.8},
        "lm": {"kind": "StandaloneLMModule", "arch_id": "a3", "test_acc": 0.3},
        "supernet": {"kind": "OneShotModule", "arch_id": None, "test_acc": 0.5},
        "unfinished": {"kind": "StandaloneModule", "arch_id": "a4"},
    }
    for name, result in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps(result))
    found = finished_standalone_runs([str(tmp_path)])
    assert sorted(r["arch_id"] for _, r in found) == ["a1", "a2", "a3"]
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"skipped {tmp_path / 'supernet'}: a OneShotModule run, not the retraining of one "
        "architecture",
        f"skipped {tmp_path / 'unfinished'}: no test_acc (not finished, or trained with "
        "test_after_fit=false)",
    ]
