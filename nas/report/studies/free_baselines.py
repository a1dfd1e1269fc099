"""The method comparison's free baselines and ceiling: what a ranking costing nothing reaches, and
what the truth itself allows.

- Proxies (`study.proxies`): each zero-cost proxy scores the same architectures the methods scored
  (`search.py strategy=proxy`, random proposals with the study's search seed) on the untrained
  stand-alone children of the truth's space and network (`study.proxy_search` with the network and
  data settings of `study.common`), into `<out>/proxies/proxy-<name>-seed<seed>/results.sqlite`;
  skipped when done with the same settings, like every step of the study.
- The ceiling: Kendall τ between two stand-alone runs (seeds) of every sampled architecture. An
  estimator as good as one more retrain gets about this against one retrain; the truth is the mean
  of the runs, a little steadier, so the ceiling is a conservative one.
- "Beats the best free proxy?": yes when a method's τ interval lies above (its low end is higher
  than) the best proxy's point estimate of τ.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from nas.errors import check
from nas.proxies import proxy_named
from nas.report.stats import ranking_quality
from nas.report.stores import open_store
from nas.report.studies.common import write_json
from nas.report.studies.comparison import Comparison, reuse, run_script
from nas.results.store import ResultsStore

LABELS = {
    "params": "parameter count",
    "macs": "MACs",
    "grad_norm": "grad-norm",
    "snip": "SNIP",
    "synflow": "SynFlow",
    "jacob_cov": "Jacobian covariance",
    "naswot": "NASWOT",
    "init_accuracy": "untrained accuracy",
}
# search.py refuses these groups (a search trains nothing and samples no paths)
_NOT_SEARCH = ("callbacks", "sampler")


def check_proxies(proxies: Sequence[str]) -> None:
    """Every name in `study.proxies` is a registered proxy (before any training starts)."""
    for name in proxies:
        proxy_named(name)


def proxy_store(study: Comparison, proxy: str) -> Path:
    folder = f"proxy-{proxy}-seed{study.search_seed}"
    return study.out / "proxies" / folder / "results.sqlite"


def score_proxy(
    study: Comparison, proxy: str, search: Sequence[str], batch: Mapping
) -> tuple[float, float]:
    """Score the study's architectures with `proxy` unless done: (search.py's wall time, the
    proxy's own seconds per architecture)."""
    store = proxy_store(study, proxy)
    given = [o for o in study.common if o.split("=")[0].split(".")[0] not in _NOT_SEARCH]
    overrides = [*given, *search, "strategy=proxy", f"proxy={proxy}"]
    overrides += [f"proxy.images={batch['images']}", f"proxy.seed={batch['seed']}"]
    overrides += [f"search.num_archs={study.num_archs}", f"search.seed={study.search_seed}"]
    cost_file = store.parent / "score_cost.json"
    reuse(
        cost_file, "overrides", overrides, "study.proxy_search, study.proxy_batch or study.common"
    )
    if not cost_file.is_file():
        log = study.out / "logs" / f"proxy-{proxy}.log"
        seconds = run_script("search.py", [*overrides, f"out_dir={store.parent}"], log)
        write_json(cost_file, {"overrides": overrides, "wall_s": seconds})
    with ResultsStore(store) as db:
        cost = db.get_meta("proxy_cost") or {}
    per_arch = cost.get("seconds", math.nan) / max(cost.get("archs", 0), 1)
    return json.loads(cost_file.read_text())["wall_s"], per_arch


def proxy_scores(study: Comparison, proxy: str, ids: Sequence[str]) -> dict[str, float]:
    rows, _, _ = open_store(proxy_store(study, proxy))
    scores = {r["arch_id"]: float(r["oneshot_acc"]) for r in rows}
    missing = [a for a in ids if a not in scores]
    check(
        not missing,
        f"proxy {proxy} did not score {len(missing)} architecture(s) of the sample: its search "
        f"proposed other architectures (another space or search seed); delete "
        f"{proxy_store(study, proxy).parent} and rerun",
    )
    return scores


def ceiling(info: Mapping, ids: Sequence[str], resamples: int, seed: int) -> dict | None:
    """Kendall τ and Spearman ρ of the first run of every sampled architecture against its
    second, with bootstrap intervals; None without two runs of each (or with a benchmark truth)."""
    runs = info.get("seed_runs")
    if not runs or any(len(runs.get(a, ())) < 2 for a in ids):
        return None
    first, second = [runs[a][0] for a in ids], [runs[a][1] for a in ids]
    quality = ranking_quality(first, second, (), resamples, seed=seed)
    return {"kendall_tau": quality["kendall_tau"], "spearman": quality["spearman"]}


def mark_beats(methods: list[dict], proxies: Sequence[dict]) -> dict | None:
    """Set `beats_best_proxy` on every method row; the best proxy (highest point τ), or None."""
    ranked = [p for p in proxies if math.isfinite(p["kendall_tau"]["value"])]
    best = max(ranked, key=lambda p: p["kendall_tau"]["value"], default=None)
    for row in methods:
        low = row["kendall_tau"]["low"]
        row["beats_best_proxy"] = (
            None if best is None or not math.isfinite(low) else low > best["kendall_tau"]["value"]
        )
    if best is None:
        return None
    return {"proxy": best["method"], "kendall_tau": best["kendall_tau"]["value"]}
