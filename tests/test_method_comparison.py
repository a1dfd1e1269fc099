"""The method comparison study end to end, tiny: two methods trained, scored and judged on one
retrained sample, then on a NAS-Bench-201 file; every number traced back to the runs."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats as sps

from nas.errors import NasError
from nas.report.stats import ranking_quality
from nas.report.studies.free_baselines import mark_beats
from nas.report.studies.method_comparison import markdown, method_comparison_study
from nas.results.complexity import count_params
from nas.results.store import ResultsStore
from nas.spaces import Architecture
from nas.spaces.nb201 import EDGES, NB201_OPS, NB201Space

ROOT = Path(__file__).resolve().parents[1]
CONFIG = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/study/method_comparison.yaml"))
TINY = [
    "model.filters=4",
    "model.cells=3",
    "model.stages=3",
    "dataset.image_size=16",
    "dataset.train_subset=256",
    "callbacks=default",
    "trainer.enable_progress_bar=false",
    "trainer.max_steps=3",
]


def _study(out, **kwargs):
    settings = {k: v for k, v in CONFIG.items() if k != "_target_"}
    settings.update(
        out_dir=str(out),
        methods=["oneshot", "darts", "darts_alpha"],
        common=TINY,
        num_archs=12,
        sample={"n": 4, "buckets": 2, "seed": 0},
        resamples=200,
        proxies=["params"],
    )
    settings.update(kwargs)
    return method_comparison_study(**settings)


def _scores(run, how="random"):
    with ResultsStore(run / "search" / f"{how}-seed0" / "results.sqlite") as store:
        return {r["arch_id"]: r["oneshot_acc"] for r in store.results()}


def _listing(out):
    (listing,) = (out / "sample").glob("*/sample.txt")  # one sample: one folder of settings
    return listing.read_text().split()


def _alpha_log_probs(run, archs):
    """log P(arch) under softmax(α), read straight from the checkpoint's tensors."""
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    probs = [state[f"alpha.{i}"].softmax(0) for i in range(len(EDGES))]
    return {
        a.id: sum(float(probs[i][NB201_OPS.index(a[e][0])].log()) for i, e in enumerate(EDGES))
        for a in archs
    }


@pytest.mark.slow
def test_two_methods_are_judged_on_one_shared_sample_and_the_study_resumes(tmp_path):
    out = tmp_path / "mc"
    _study(out)
    numbers = json.loads((out / "method_comparison.json").read_text())
    table = (out / "method_comparison.md").read_text()
    assert table.splitlines()[0].startswith("| method | training (s) | training images |")
    assert [r["method"] for r in numbers["methods"]] == ["oneshot", "darts", "darts_alpha"]
    assert "One-Shot (path dropout)" in table and "DARTS (first order)" in table

    # the truth: the mean test accuracy of the sample's stand-alone runs (two seeds each),
    # retrained once for all methods
    ids = numbers["sample"]["arch_ids"]
    runs = defaultdict(list)
    for path in sorted((out / "standalone").rglob("result.json")):
        result = json.loads(path.read_text())
        runs[result["arch_id"]].append(result["test_acc"])
    assert sorted(runs) == sorted(ids) and len(ids) == 4
    assert {len(v) for v in runs.values()} == {2}
    assert numbers["sample"]["truth"] == pytest.approx([np.mean(runs[a]) for a in ids])
    seeds = sps.kendalltau([runs[a][0] for a in ids], [runs[a][1] for a in ids]).statistic
    assert numbers["truth_cost"]["seed_kendall_tau"] == pytest.approx(seeds, nan_ok=True)
    runs = {a: float(np.mean(v)) for a, v in runs.items()}
    scored = {m: _scores(out / "runs" / m) for m in ("oneshot", "darts")}
    scored["darts_alpha"] = _scores(out / "runs" / "darts", "alpha")
    assert sorted(scored["oneshot"]) == sorted(scored["darts"]) == sorted(scored["darts_alpha"])
    assert len(scored["darts"]) == 12
    space = NB201Space()
    archs = [Architecture.load(p, space) for p in _listing(out)]
    alpha = _alpha_log_probs(out / "runs" / "darts", archs)
    assert {a: scored["darts_alpha"][a] for a in alpha} == pytest.approx(alpha)
    for row in numbers["methods"]:
        run = out / "runs" / row["method"].removesuffix("_alpha")
        expected = ranking_quality(
            [scored[row["method"]][a] for a in ids], [runs[a] for a in ids], [1, 10], 200
        )
        assert row["kendall_tau"] == pytest.approx(expected["kendall_tau"], nan_ok=True)
        assert row["top"]["1"]["regret"] == pytest.approx(expected["top"][1]["regret"])
        result = json.loads((run / "result.json").read_text())
        batch = OmegaConf.load(run / ".hydra" / "config.yaml").dataset.batch_size
        assert row["train_steps"] == result["steps"] == 3
        assert row["train_images"] == 3 * batch
        assert row["train_wall_s"] > 0 and row["score_wall_s"] > 0

    # the free baseline: each sampled architecture's parameter count, judged on the same truth
    (free,) = numbers["proxies"]
    network = {"filters": 4, "cells": 3, "stages": 3, "num_classes": 10, "in_channels": 1}
    sizes = {a.id: count_params(a.space.build_child(a, **network)) for a in archs}
    expected = ranking_quality([sizes[a] for a in ids], [runs[a] for a in ids], [1, 10], 200)
    assert free["kendall_tau"] == pytest.approx(expected["kendall_tau"], nan_ok=True)
    assert free["train_images"] == 0 and free["proxy_s_per_arch"] > 0
    assert "| Free: parameter count | 0 | 0 |" in table
    for row in numbers["methods"]:  # yes exactly when the interval lies above the proxy's tau
        above = row["kendall_tau"]["low"] > free["kendall_tau"]["value"]
        assert row["beats_best_proxy"] is above
    # the ceiling: one seed's stand-alone accuracies against the other's
    assert numbers["ceiling"]["kendall_tau"]["value"] == pytest.approx(seeds, nan_ok=True)
    assert "| Ceiling: one retrain (seed) vs another |" in table

    # rerunning skips every finished step: no new runs, the same numbers
    logs = {p: p.stat().st_mtime_ns for p in (out / "logs").iterdir()}
    _study(out)
    assert {p: p.stat().st_mtime_ns for p in (out / "logs").iterdir()} == logs
    assert json.loads((out / "method_comparison.json").read_text()) == numbers
    with pytest.raises(NasError, match=r"runs/oneshot was made with overrides=\["):
        _study(out, common=[*TINY[:-1], "trainer.max_steps=4"])  # not silently reused

    # the same sample looked up in a NAS-Bench-201 file instead: no training at all
    pytest.importorskip("nas_201_api")
    from tests.test_quality_nb201 import official_strings, write_benchmark

    space, strings = NB201Space(), official_strings()
    archs = [Architecture.load(p, space) for p in _listing(out)]
    index = {a.id: strings.index(space.to_arch_string(a)) for a in archs}
    trials = {index[a]: [(10.0 + 20 * k, 5.0)] for k, a in enumerate(sorted(index))}
    write_benchmark(tmp_path / "bench.pth", trials)
    _study(out, truth=f"nb201:{tmp_path / 'bench.pth'}")
    numbers = json.loads((out / "method_comparison.json").read_text())
    assert numbers["truth"] == "NAS-Bench-201 cifar10-valid valid-accuracy (200 epochs)"
    truth = {a: 10.0 + 20 * k for k, a in enumerate(sorted(index))}
    assert numbers["sample"]["truth"] == [truth[a] for a in ids]
    expected = ranking_quality([scored["darts"][a] for a in ids], [truth[a] for a in ids])
    assert numbers["methods"][1]["spearman"]["value"] == pytest.approx(
        expected["spearman"]["value"], nan_ok=True
    )


def _judged(method: str, value: float, low: float, high: float) -> dict:
    tau = {"value": value, "low": low, "high": high}
    top = {"1": {"regret": 0.01}, "10": {"precision": 0.5}}
    return {"method": method, "label": method.upper(), "train_wall_s": 1.0, "train_images": 10,
            "train_steps": 1, "score_wall_s": 2.0, "kendall_tau": tau,
            "spearman": {"value": value}, "top": top, "proxy_s_per_arch": 0.002}  # fmt: skip


def test_a_method_beats_the_best_free_proxy_only_with_its_whole_interval_above_it():
    methods = [
        _judged("a", 0.6, 0.41, 0.8),
        _judged("b", 0.6, 0.39, 0.8),
        _judged("c", 0.2, -0.1, 0.5),
    ]
    free = [_judged("params", 0.3, 0.1, 0.5), _judged("synflow", 0.4, 0.2, 0.6),
            _judged("naswot", math.nan, math.nan, math.nan)]  # fmt: skip
    best = mark_beats(methods, free)
    assert best == {"proxy": "synflow", "kendall_tau": 0.4}  # NaN (a constant proxy) never best
    assert [m["beats_best_proxy"] for m in methods] == [True, False, False]
    assert mark_beats([_judged("a", 0.6, 0.41, 0.8)], []) is None
    numbers = {
        "ks": [1, 10], "methods": methods, "proxies": free, "best_proxy": best, "truth": "t",
        "proxy_batch": {"images": 64, "seed": 0}, "truth_cost": {"wall_s": 0.0},
        "ceiling": {"kendall_tau": {"value": 0.7, "low": 0.5, "high": 0.85},
                    "spearman": {"value": 0.8}},
        "sample": {"arch_ids": ["x", "y"], "buckets": 2}, "num_archs": 10, "resamples": 200,
    }  # fmt: skip
    lines = markdown(numbers).splitlines()
    assert lines[0].endswith("| regret@1 | beats the best free proxy? |")
    assert [line.rsplit("|", 2)[1].strip() for line in lines[2:8]] == [
        "yes",
        "no",
        "no",
        "–",
        "–",
        "–",
    ]
    assert (
        lines[8]
        == "| Ceiling: one retrain (seed) vs another | – | – | – | 0.70 [0.50, 0.85] | 0.80 | – | – | – |"
    )
    assert "(synflow, 0.40)" in lines[-1] and "synflow 2.0" in lines[-1]
    del numbers["proxies"], numbers["ceiling"]  # a comparison without them: the table as before
    assert markdown(numbers).splitlines()[0].endswith("| regret@1 |")


def test_bad_study_settings_are_refused_before_any_training(tmp_path):
    with pytest.raises(NasError, match="'nope', which has no recipe"):
        _study(tmp_path, methods=["oneshot", "nope"])
    with pytest.raises(NasError, match="study.truth='cifar' must be retrain or nb201:"):
        _study(tmp_path, truth="cifar")
    with pytest.raises(NasError, match="proxy='flops' is not a known proxy"):
        _study(tmp_path, proxies=["flops"])
    assert not (tmp_path / "runs").exists()


def test_study_config_has_a_recipe_for_every_method():
    assert CONFIG["methods"] and set(CONFIG["methods"]) <= set(CONFIG["recipes"])
    assert CONFIG["recipes"]["fewshot"]["parent"] in CONFIG["recipes"]
    assert CONFIG["truth"] == "retrain"
