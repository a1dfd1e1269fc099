"""The method comparison study end to end, tiny: two methods trained, scored and judged on one
retrained sample, then on a NAS-Bench-201 file; every number traced back to the runs."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats as sps

from nas.errors import NasError
from nas.report.stats import ranking_quality
from nas.report.studies.method_comparison import method_comparison_study
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


def test_bad_study_settings_are_refused_before_any_training(tmp_path):
    with pytest.raises(NasError, match="'nope', which has no recipe"):
        _study(tmp_path, methods=["oneshot", "nope"])
    with pytest.raises(NasError, match="study.truth='cifar' must be retrain or nb201:"):
        _study(tmp_path, truth="cifar")
    assert not (tmp_path / "runs").exists()


def test_study_config_has_a_recipe_for_every_method():
    assert CONFIG["methods"] and set(CONFIG["methods"]) <= set(CONFIG["recipes"])
    assert CONFIG["recipes"]["fewshot"]["parent"] in CONFIG["recipes"]
    assert CONFIG["truth"] == "retrain"
