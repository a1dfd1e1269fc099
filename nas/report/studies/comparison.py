"""The steps of the method comparison (`nas.report.studies.method_comparison`), over one folder.

`Comparison` trains every method, scores the same architectures with each, draws the shared sample
and retrains it; every step is skipped when its outputs exist (keyed by its settings), so an
interrupted study resumes where it stopped. `train.py` and `search.py` run as subprocesses
(`run_script`), their output in `<out>/logs/`.
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

from nas.errors import NasError, check
from nas.methods.darts.alpha import AlphaModule
from nas.report.quality.sample import stratified_rows
from nas.report.runs import RESULT, runs_by_arch, runs_truth
from nas.report.stats import rank_correlations
from nas.report.stores import open_store
from nas.report.studies.common import write_json
from nas.results.selection import to_archs, write_selection
from nas.results.store import ResultsStore
from nas.search.checkpoint import load_supernet_module
from nas.spaces import Architecture

ROOT = Path(__file__).resolve().parents[3]  # train.py and search.py live here


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
    module = load_supernet_module(str(ckpt), torch.device("cpu"))
    check(
        isinstance(module, AlphaModule),
        f"{ckpt} holds a {type(module).__name__}; an α ranking needs a DARTS or GDAS run",
    )
    probs = module.option_probabilities()
    rows, space, _ = open_store(scored)
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
        rows, _, _ = open_store(self.store_path(method))
        return {r["arch_id"]: float(r["oneshot_acc"]) for r in rows}

    # -- 3. sample ---------------------------------------------------------------------------
    def sample(self, methods: Sequence[str], n: int, buckets: int, seed: int) -> dict[str, str]:
        """The shared sample, {arch id: architecture file}: drawn once per setting, then read back
        (`<out>/sample/<key of the settings>/`: other methods or sizes draw another sample)."""
        settings = [list(methods), n, buckets, seed, self.num_archs, self.search_seed]
        listing = self.out / "sample" / key(settings) / "sample.txt"
        if not listing.is_file():
            rows, space, _ = open_store(self.store_path(methods[0]))
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
            info["seed_runs"] = {a: v[:2] for a, v in runs.items()}  # the ceiling's pairs
        return {a: sum(v) / len(v) for a, v in runs.items()}, info
