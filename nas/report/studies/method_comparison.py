"""The method comparison: every weight-sharing method's ranking judged on one shared truth.

`python study.py study=method_comparison` (conf/study/method_comparison.yaml), in five steps, each
skipped when its outputs exist (an interrupted study resumes where it stopped):
  1. train: each method's quickstart (`train.py`, the recipe's overrides plus the common network
     and data) into `<out>/runs/<method>`; its cost (wall time of the process, training images =
     weight steps x batch size, from each run's result.json and config) into `cost.json`;
  2. score: `search.py` random search with one seed, so every method scores the same
     `num_archs` architectures, into `<run>/search/random-seed<seed>/results.sqlite`;
  3. sample: n architectures in quantile buckets of their mean rank over the methods (the
     stratified sampler of `nas.report.quality.sample`, neutral to any one method) -> `<out>/sample/`;
  4. truth: the sample retrained stand-alone once for all methods (`<out>/standalone/`), or
     looked up in NAS-Bench-201 (`truth=nb201:<file>`);
  5. the table: per method, Kendall tau with its bootstrap interval, precision@k and regret@1 of
     its scores on the sample (`nas.report.stats.ranking_quality`) -> `method_comparison.md` and
     `.json`.

Steps 1-4 are the `Comparison` of `nas.report.studies.comparison`; this module runs them and writes
the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nas.atomic import write_text
from nas.errors import check
from nas.report.quality.nb201 import DEFAULTS, PREFIX
from nas.report.quality.report import truth_of
from nas.report.stats import ranking_quality
from nas.report.stores import open_store
from nas.report.studies.common import write_json
from nas.report.studies.comparison import Comparison


def method_comparison_study(
    out_dir: str,
    methods: Sequence[str],
    recipes: Mapping,
    common: Sequence[str] = (),
    standalone: Sequence[str] = (
        "experiment=quickstart_nb201_standalone",
        "trainer.max_epochs=2",
        "seed=0,1",
    ),
    truth: str = "retrain",
    nb201: Mapping | None = None,
    num_archs: int = 200,
    search_seed: int = 0,
    sample: Mapping | None = None,
    ks: Sequence[int] = (1, 10),
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """Run the comparison (module docstring); returns the paths and the table's rows."""
    check(bool(methods), "study.methods is empty; list methods of study.recipes")
    check(
        truth == "retrain" or str(truth).startswith(PREFIX),
        f"study.truth={truth!r} must be retrain or nb201:<NAS-Bench-201 benchmark file>",
    )
    check(
        isinstance(num_archs, int) and num_archs >= 2,
        f"study.num_archs={num_archs!r} must be an integer >= 2",
    )
    sample = {"n": 20, "buckets": 5, "seed": 0, **(sample or {})}
    study = Comparison(out_dir, recipes, common, num_archs, search_seed)
    for method in methods:
        study.recipe(method)  # every name checked before hours of training
    costs = {m: study.train(m) for m in methods}
    scoring = {m: study.score(m) for m in methods}
    sampled = study.sample(methods, sample["n"], sample["buckets"], sample["seed"])
    ids = sorted(sampled)
    if truth == "retrain":
        values, truth_info = study.retrain(sampled, standalone)
        truth_text = f"stand-alone test accuracy ({' '.join(standalone)})"
    else:
        rows, space, _ = open_store(study.store_path(methods[0]))
        rows = [r for r in rows if r["arch_id"] in sampled]
        values, missing = truth_of([truth], rows, space, "the study's sample", benchmark=nb201)
        check(
            not missing,
            f"{len(missing)} architecture(s) of the sample are not in the benchmark file "
            f"{truth[len(PREFIX) :]!r}; pass the complete NAS-Bench-201 file",
        )
        truth_info = {"wall_s": 0.0}
        settings = {**DEFAULTS, **(nb201 or {})}
        truth_text = "NAS-Bench-201 {dataset} {metric} ({hp} epochs)".format(**settings)
    rows = []
    for method in methods:
        scores = study.scores(method)
        quality = ranking_quality(
            [scores[a] for a in ids], [values[a] for a in ids], ks, resamples, seed=seed
        )
        rows.append(
            {
                "method": method,
                "label": study.recipe(method).get("label", method),
                "train_wall_s": costs[method]["wall_s"],
                "train_images": costs[method]["images"],
                "train_steps": costs[method]["steps"],
                "score_wall_s": scoring[method],
                **{k: quality[k] for k in ("kendall_tau", "spearman", "pearson")},
                "top": quality["top"],
            }
        )
    numbers = {
        "truth": truth_text,
        "truth_cost": truth_info,
        "num_archs": num_archs,
        "sample": {**sample, "arch_ids": ids, "truth": [values[a] for a in ids]},
        "level": 0.95,
        "resamples": resamples,
        "ks": list(ks),
        "methods": rows,
    }
    out = study.out
    write_json(out / "method_comparison.json", numbers)
    write_text(out / "method_comparison.md", markdown(numbers))
    return {
        "table": str(out / "method_comparison.md"),
        "numbers": str(out / "method_comparison.json"),
        "methods": [r["method"] for r in rows],
    }


def _top(row: Mapping, k: int, what: str) -> str:
    """precision@k or regret@k of a table row ('–' where the sample is smaller than k)."""
    top = row["top"].get(k, row["top"].get(str(k)))  # int keys, or str once read from JSON
    return "–" if top is None else f"{top[what]:.{1 if what == 'precision' else 3}f}"


def markdown(numbers: Mapping) -> str:
    """The comparison as one markdown table, what its columns mean underneath."""
    k = max(numbers["ks"])
    lines = [
        f"| method | training (s) | training images | scoring (s) | Kendall τ [95% CI] "
        f"| Spearman ρ | precision@{k} | regret@1 |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in numbers["methods"]:
        tau = r["kendall_tau"]
        lines.append(
            f"| {r['label']} | {r['train_wall_s']:.0f} | {r['train_images']:,} "
            f"| {r['score_wall_s']:.0f} | {tau['value']:.2f} [{tau['low']:.2f}, {tau['high']:.2f}] "
            f"| {r['spearman']['value']:.2f} | {_top(r, k, 'precision')} "
            f"| {_top(r, 1, 'regret')} |"
        )
    s = numbers["sample"]
    lines += [
        "",
        f"Truth: {numbers['truth']} of {len(s['arch_ids'])} architectures ({s['buckets']} quantile "
        f"buckets of the methods' mean rank over the {numbers['num_archs']} architectures every "
        "method scored). Training: wall time of the training process(es); training images = "
        "weight steps x batch size (few-shot: its parent's included). Scoring: search.py's wall "
        f"time. Intervals: {numbers['resamples']} bootstrap resamples. Regret@1: best truth of the "
        "sample minus the truth of the method's top-scored architecture.",
    ]
    cost = numbers["truth_cost"]
    if cost["wall_s"]:
        lines[-1] += f" Retraining the sample: {cost['wall_s']:.0f} s."
    if cost.get("seed_kendall_tau") is not None:
        lines[-1] += (
            f" Kendall τ between two runs (seeds) of each sampled architecture: "
            f"{cost['seed_kendall_tau']:.2f}, how well the truth agrees with itself."
        )
    return "\n".join(lines) + "\n"
