"""The method comparison: every weight-sharing method's ranking judged on one shared truth.

`python study.py study=method_comparison` (conf/study/method_comparison.yaml), in five steps, each
skipped when its outputs exist (an interrupted study resumes where it stopped):
  1. train: each method's quickstart (`train.py`, the recipe's overrides plus the common network
     and data) into `<out>/runs/<method>`; its cost (wall time of the process, training images =
     weight steps x batch size, from each run's result.json and config) into `cost.json`;
  2. score: `search.py` random search with one seed, so every method scores the same
     `num_archs` architectures, into `<run>/search/random-seed<seed>/results.sqlite`;
  3. sample: n architectures in quantile buckets of their mean rank over the methods (the
     stratified sampler of `nas.quality.sample`, neutral to any one method) -> `<out>/sample/`;
  4. truth: the sample retrained stand-alone once for all methods (`<out>/standalone/`), or
     looked up in NAS-Bench-201 (`truth=nb201:<file>`);
  5. the table: per method, Kendall tau with its bootstrap interval, precision@k and regret@1 of
     its scores on the sample (`nas.quality.metrics`) -> `method_comparison.md` and `.json`.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from scipy.stats import rankdata

from nas.analysis.correlation import rank_correlations
from nas.atomic import write_text
from nas.collect import RESULT
from nas.errors import NasError, check
from nas.quality.metrics import ranking_quality
from nas.quality.nb201 import DEFAULTS, PREFIX
from nas.quality.report import read_store, runs_by_arch, runs_truth, truth_of
from nas.quality.sample import stratified_rows
from nas.results.selection import to_archs, write_selection
from nas.results.store import ResultsStore
from nas.spaces import Architecture
from nas.studies.common import write_json

ROOT = Path(__file__).resolve().parents[2]  # train.py and search.py live here


def run_script(script: str, overrides: Sequence[str], log: Path) -> float:
    """Run `python <script> <overrides>` in the project root, output to `log`; its wall time."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(
            [sys.executable, script, *overrides], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    seconds = time.perf_counter() - start
    if done.returncode:
        lines = log.read_text().strip().splitlines()
        raise NasError(
            f"`{script} {' '.join(overrides)}` failed (exit {done.returncode}): "
            f"{lines[-1] if lines else 'no output'}; full output in {log}"
        )
    return seconds


def run_cost(run: Path) -> dict:
    """Weight steps and training images (steps x batch size) of one finished train.py run."""
    result = json.loads((run / RESULT).read_text())
    batch = int(OmegaConf.load(run / ".hydra" / "config.yaml").dataset.batch_size)
    return {"steps": int(result["steps"]), "images": int(result["steps"]) * batch}


def alpha_ranking(ckpt: Path, scored: Path, out: Path) -> None:
    """Rank the architectures of store `scored` by their log-probability under a DARTS or GDAS
    checkpoint's softmax(α), the distribution their derivation takes the argmax of, into `out`."""
    from nas.methods.alpha import AlphaModule
    from nas.search.checkpoint import load_supernet_module

    module = load_supernet_module(str(ckpt), torch.device("cpu"))
    check(
        isinstance(module, AlphaModule),
        f"{ckpt} holds a {type(module).__name__}; an α ranking needs a DARTS or GDAS run",
    )
    probs = module.option_probabilities()
    rows, space = read_store(scored)
    with ResultsStore(out, space=space, checkpoint=str(ckpt)) as store:
        for row in rows:
            arch = Architecture.from_json(row["arch_json"], space)
            score = sum(
                math.log(max(probs[d.name][d.options.index(o)], 1e-30))
                for d in space.decisions
                for o in arch[d.name]
            )
            store.add({"arch": arch, "oneshot_acc": score, "seq": row["seq"]})


def key(settings) -> str:
    """A short name for a step's settings: its folder, so other settings never reuse it."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def reuse(path: Path, name: str, value, setting: str) -> None:
    """Stop if the finished step at `path` ran with another `name` than `value` now asks."""
    if path.is_file():
        before = json.loads(path.read_text()).get(name)
        check(
            before == value,
            f"{path.parent} was made with {name}={before!r}, this study asks for {value!r} "
            f"({setting}); pass another study.out_dir, or delete {path.parent} to redo it",
        )


class Comparison:
    """The study's steps over one output directory (see the module docstring)."""

    def __init__(self, out_dir: str, recipes: Mapping, common: Sequence[str], num_archs: int, seed):
        self.out = Path(out_dir).expanduser().resolve()
        self.recipes, self.common = recipes, list(common)
        self.num_archs, self.search_seed = num_archs, seed

    def run_dir(self, method: str) -> Path:
        return self.out / "runs" / self.recipe(method).get("ranks", method)

    def recipe(self, method: str) -> Mapping:
        check(
            method in self.recipes,
            f"study.methods has {method!r}, which has no recipe; known: {sorted(self.recipes)} "
            "(add one under study.recipes)",
        )
        return self.recipes[method]

    # -- 1. train ----------------------------------------------------------------------------
    def train(self, method: str) -> dict:
        """Train `method` (and its parent) unless done; its cost, the parent's included."""
        recipe, run = self.recipe(method), self.run_dir(method)
        if recipe.get("ranks"):  # another ranking of that method's run: its training cost
            return self.train(recipe["ranks"])
        overrides = [*self.common, *recipe["train"]]
        parent = recipe.get("parent")
        parent_cost = self.train(parent) if parent else None
        if parent:
            ckpt = self.run_dir(parent) / "checkpoints" / "last.ckpt"
            overrides.append(f"model.parent={ckpt}")
        cost_file = run / "cost.json"
        reuse(cost_file, "overrides", overrides, f"study.recipes.{method}.train or study.common")
        if not cost_file.is_file():
            log = self.out / "logs" / f"train-{method}.log"
            sweep = recipe.get("sweep")
            if sweep:  # one job per value, in <run>/<value>: what search.py's ckpt=<dir> reads
                (key, values), *more = sweep.items()
                check(not more, f"recipe {method!r}: sweep one setting, not {list(sweep)}")
                args = ["-m", *overrides, f"{key}={','.join(map(str, values))}"]
                args += [f"hydra.sweep.dir={run}", f"hydra.sweep.subdir=${{{key}}}"]
                seconds = run_script("train.py", args, log)
                runs = [run / str(v) for v in values]
            else:
                resume = (run / "checkpoints" / "last.ckpt").is_file()  # an interrupted run
                args = [*overrides, f"hydra.run.dir={run}", *([f"resume={run}"] if resume else [])]
                seconds = run_script("train.py", args, log)
                runs = [run]
            costs = [run_cost(r) for r in runs]
            own = {
                "overrides": overrides,
                "wall_s": seconds,
                "steps": sum(c["steps"] for c in costs),
                "images": sum(c["images"] for c in costs),
            }
            write_json(cost_file, own)
        cost = json.loads(cost_file.read_text())
        if parent_cost:  # few-shot's sub-supernets start from the parent: its cost is theirs too
            cost = {k: cost[k] + parent_cost[k] for k in ("wall_s", "steps", "images")}
        return cost

    # -- 2. score ----------------------------------------------------------------------------
    def store_path(self, method: str) -> Path:
        how = "alpha" if self.recipe(method).get("ranks") else "random"
        return self.run_dir(method) / "search" / f"{how}-seed{self.search_seed}" / "results.sqlite"

    def score(self, method: str) -> float:
        """Score `num_archs` architectures with `method`'s supernet(s) unless done; wall time."""
        recipe, run = self.recipe(method), self.run_dir(method)
        cost_file = self.store_path(method).parent / "score_cost.json"
        reuse(cost_file, "num_archs", self.num_archs, "study.num_archs")
        if recipe.get("ranks") and not cost_file.is_file():
            self.score(recipe["ranks"])  # the same architectures, ranked by α instead
            start = time.perf_counter()
            alpha_ranking(
                run / "checkpoints" / "last.ckpt",
                self.store_path(recipe["ranks"]),
                self.store_path(method),
            )
            seconds = time.perf_counter() - start
            write_json(cost_file, {"num_archs": self.num_archs, "wall_s": seconds})
        if not cost_file.is_file():
            # the data settings only: search.py reads the network and space from the checkpoint
            data = [
                o
                for o in [*self.common, *recipe["train"]]
                if o.startswith(("experiment=", "dataset."))
            ]
            ckpt = run if recipe.get("sweep") else run / "checkpoints" / "last.ckpt"
            args = [*data, f"ckpt={ckpt}", "strategy=random"]
            args += [f"search.num_archs={self.num_archs}", f"search.seed={self.search_seed}"]
            seconds = run_script("search.py", args, self.out / "logs" / f"score-{method}.log")
            write_json(cost_file, {"num_archs": self.num_archs, "wall_s": seconds})
        return json.loads(cost_file.read_text())["wall_s"]

    def scores(self, method: str) -> dict[str, float]:
        rows, _ = read_store(self.store_path(method))
        return {r["arch_id"]: float(r["oneshot_acc"]) for r in rows}

    # -- 3. sample ---------------------------------------------------------------------------
    def sample(self, methods: Sequence[str], n: int, buckets: int, seed: int) -> dict[str, str]:
        """The shared sample, {arch id: architecture file}: drawn once per setting, then read back
        (`<out>/sample/<key of the settings>/`: other methods or sizes draw another sample)."""
        settings = [list(methods), n, buckets, seed, self.num_archs, self.search_seed]
        listing = self.out / "sample" / key(settings) / "sample.txt"
        if not listing.is_file():
            rows, space = read_store(self.store_path(methods[0]))
            by_method = {m: self.scores(m) for m in methods}
            ids = sorted(by_method[methods[0]])
            for m, scores in by_method.items():
                check(
                    sorted(scores) == ids,
                    f"methods {methods[0]!r} and {m!r} scored different architectures "
                    f"({len(ids)} vs {len(scores)}); delete {self.store_path(m).parent} and rerun",
                )
            # rank 1 = best; the mean over the methods decides the quantile bucket
            ranks = np.mean([rankdata([-by_method[m][a] for a in ids]) for m in methods], axis=0)
            mean_rank = dict(zip(ids, ranks.tolist(), strict=True))
            pool = [{**r, "oneshot_acc": -mean_rank[r["arch_id"]]} for r in rows]
            chosen = stratified_rows(pool, n, buckets, seed)
            write_selection(listing.parent, "sample", to_archs(chosen, space))
            write_json(
                listing.parent / "settings.json",
                {
                    "methods": settings[0],
                    "n": n,
                    "buckets": buckets,
                    "seed": seed,
                    "num_archs": self.num_archs,
                },
            )
        # files are sample_<i>_<arch id>.json (write_selection)
        return {Path(p).stem.split("_", 2)[2]: p for p in listing.read_text().split()}

    # -- 4. truth ----------------------------------------------------------------------------
    def retrain(self, sample: Mapping[str, str], standalone: Sequence[str]) -> tuple[dict, dict]:
        """Stand-alone accuracy of the sample (retraining those without a finished run), in
        `<out>/standalone/<key of the overrides>/`; and the wall time of all retraining, with
        Kendall tau between two runs of every architecture (seeds) when there are two: how well
        the truth agrees with itself."""
        overrides = [*self.common, *standalone]
        root = self.out / "standalone" / key(overrides)
        costs = root / "cost.json"
        root.mkdir(parents=True, exist_ok=True)
        have = runs_truth([str(root)], set(sample))[0] if any(root.rglob(RESULT)) else {}
        todo = [a for a in sample if a not in have]
        if todo:  # one multirun per attempt, in a new folder: finished runs are never redone
            attempt = root / str(sum(1 for d in root.iterdir() if d.is_dir()))
            args = ["-m", *overrides, "arch=" + ",".join(sample[a] for a in todo)]
            log = self.out / "logs" / f"retrain-{root.name}-{attempt.name}.log"
            seconds = run_script("train.py", [*args, f"hydra.sweep.dir={attempt}"], log)
            before = json.loads(costs.read_text())["wall_s"] if costs.is_file() else 0.0
            write_json(costs, {"overrides": overrides, "wall_s": before + seconds})
        runs, _ = runs_by_arch([str(root)], set(sample))
        check(
            set(runs) == set(sample),
            f"retraining left {len(set(sample) - set(runs))} architecture(s) of the sample "
            f"without a result; see the logs in {self.out / 'logs'}",
        )
        info = {"wall_s": json.loads(costs.read_text())["wall_s"], "runs_per_arch": 1}
        if all(len(v) >= 2 for v in runs.values()):
            first, second = zip(*(v[:2] for v in runs.values()), strict=True)
            info["runs_per_arch"] = min(len(v) for v in runs.values())
            info["seed_kendall_tau"] = rank_correlations(first, second)["kendall_tau"]
        return {a: sum(v) / len(v) for a, v in runs.items()}, info


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
        rows, space = read_store(study.store_path(methods[0]))
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
