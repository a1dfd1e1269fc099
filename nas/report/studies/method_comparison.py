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

Free baselines (`nas.report.studies.free_baselines`): every proxy of `study.proxies` scores the same
architectures' untrained children (after step 2; no training), judged on the same sample as a row
of its own; the seed-vs-seed τ of the retrained truth is the ceiling row; each method's row says
whether it beats the best proxy (its τ interval above that proxy's τ). The sample is drawn from the
methods' rankings only, so adding or dropping a proxy retrains nothing.

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
from nas.report.studies.free_baselines import (
    LABELS,
    ceiling,
    check_proxies,
    mark_beats,
    proxy_scores,
    score_proxy,
)


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
    proxies: Sequence[str] = (),
    proxy_search: Sequence[str] = ("experiment=quickstart_nb201",),
    proxy_batch: Mapping | None = None,
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
    check_proxies(proxies)
    batch = {"images": 64, "seed": 0, **(proxy_batch or {})}
    costs = {m: study.train(m) for m in methods}
    scoring = {m: study.score(m) for m in methods}
    proxy_costs = {p: score_proxy(study, p, proxy_search, batch) for p in proxies}
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
    true_values = [values[a] for a in ids]

    def judged(name: str, label: str, scores: Mapping[str, float], cost: Mapping) -> dict:
        quality = ranking_quality([scores[a] for a in ids], true_values, ks, resamples, seed=seed)
        return {
            "method": name,
            "label": label,
            **cost,
            **{k: quality[k] for k in ("kendall_tau", "spearman", "pearson")},
            "top": quality["top"],
        }

    rows = []
    for method in methods:
        cost = {
            "train_wall_s": costs[method]["wall_s"],
            "train_images": costs[method]["images"],
            "train_steps": costs[method]["steps"],
            "score_wall_s": scoring[method],
        }
        label = study.recipe(method).get("label", method)
        rows.append(judged(method, label, study.scores(method), cost))
    free = []
    for proxy in proxies:
        wall, per_arch = proxy_costs[proxy]
        cost = {"train_wall_s": 0.0, "train_images": 0, "train_steps": 0, "score_wall_s": wall}
        label = f"Free: {LABELS.get(proxy, proxy)}"
        free.append(judged(proxy, label, proxy_scores(study, proxy, ids), cost))
        free[-1]["proxy_s_per_arch"] = per_arch
    best = mark_beats(rows, free)
    seed_runs = truth_info.pop("seed_runs", None)  # in the JSON as the ceiling's, not the cost's
    roof = ceiling({"seed_runs": seed_runs}, ids, resamples, seed) if seed_runs else None
    numbers = {
        "truth": truth_text,
        "truth_cost": truth_info,
        "num_archs": num_archs,
        "sample": {**sample, "arch_ids": ids, "truth": [values[a] for a in ids]},
        "level": 0.95,
        "resamples": resamples,
        "ks": list(ks),
        "methods": rows,
        "proxies": free,
        "proxy_batch": batch if proxies else None,
        "best_proxy": best,
        "ceiling": roof and {**roof, "runs": [seed_runs[a][:2] for a in ids]},
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


def _row(r: Mapping, k: int, beats: str | None) -> str:
    tau = r["kendall_tau"]
    cells = [
        r["label"],
        f"{r['train_wall_s']:.0f}",
        f"{r['train_images']:,}",
        f"{r['score_wall_s']:.0f}",
        f"{tau['value']:.2f} [{tau['low']:.2f}, {tau['high']:.2f}]",
        f"{r['spearman']['value']:.2f}",
        _top(r, k, "precision"),
        _top(r, 1, "regret"),
        *([beats] if beats is not None else []),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(numbers: Mapping) -> str:
    """The comparison as one markdown table, what its columns mean underneath."""
    k = max(numbers["ks"])
    free = numbers.get("proxies") or []
    lines = [
        f"| method | training (s) | training images | scoring (s) | Kendall τ [95% CI] "
        f"| Spearman ρ | precision@{k} | regret@1 |{' beats the best free proxy? |' if free else ''}",
        f"| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |{' :---: |' if free else ''}",
    ]
    for r in numbers["methods"]:
        beats = {True: "yes", False: "no", None: "–"}[r.get("beats_best_proxy")] if free else None
        lines.append(_row(r, k, beats))
    lines += [_row(r, k, "–") for r in free]
    roof = numbers.get("ceiling")
    if roof:
        tau = roof["kendall_tau"]
        lines.append(
            f"| Ceiling: one retrain (seed) vs another | – | – | – | {tau['value']:.2f} "
            f"[{tau['low']:.2f}, {tau['high']:.2f}] | {roof['spearman']['value']:.2f} | – | – |"
            + (" – |" if free else "")
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
    if free:
        batch, best = numbers["proxy_batch"], numbers["best_proxy"]
        per_arch = ", ".join(f"{r['method']} {1000 * r['proxy_s_per_arch']:.1f}" for r in free)
        lines[-1] += (
            f" Free: zero-cost proxies of each architecture's untrained child (search.py "
            f"strategy=proxy; {batch['images']} training images, seed {batch['seed']}), no "
            f"training; their own ms per architecture: {per_arch}. Beats the best free proxy: "
            "yes when the method's τ interval lies above the best proxy's τ"
            + (f" ({best['proxy']}, {best['kendall_tau']:.2f})." if best else ".")
        )
    if roof:
        lines[-1] += (
            " Ceiling: τ of one stand-alone run of each architecture against the other, about "
            "the best an estimator can expect (the truth, their mean, is a little steadier)."
        )
    return "\n".join(lines) + "\n"
