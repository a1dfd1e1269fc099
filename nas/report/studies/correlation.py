"""The correlation study (paper Fig. 5): one-shot vs stand-alone accuracy of a bucketed sample.

Two steps around a retraining sweep:
  1. `correlation_pick`: bucket the searched architectures by one-shot accuracy, sample a few per
     bucket, write their JSONs and `picks.txt` (the list for `train.py -m arch=...`).
  2. `correlation_study`: after retraining, mean ± std of the stand-alone accuracy over seeds
     against one-shot accuracy; Kendall tau, Spearman and Pearson to `correlation.json`.
"""

from __future__ import annotations

import random
from pathlib import Path

from nas.atomic import write_text
from nas.errors import check
from nas.report.figures import plot_correlation
from nas.report.runs import runs_by_arch
from nas.report.stats import bucket_index, bucket_sample, mean_std, rank_correlations
from nas.report.stores import open_store
from nas.report.studies.common import arch_of, checkpoint_hparams, read_json, write_json
from nas.results.selection import write_selection
from nas.samplers.base import sampler_spec


def correlation_pick(
    store: str,
    out_dir: str,
    num_buckets: int = 5,
    per_bucket: int = 2,
    seed: int = 0,
    num_archs: int | None = None,
) -> dict:
    """Sample `per_bucket` architectures from each of `num_buckets` one-shot accuracy buckets.

    With `num_archs`, only the first `num_archs` proposals are considered, so a search of another
    supernet with the same `search.seed` and `search.num_archs` scores every pick (dropout study).
    """
    rows, space, ckpt = open_store(store)
    hparams = checkpoint_hparams(ckpt)
    check(num_archs is None or num_archs >= 1, f"num_archs={num_archs!r} must be null or >= 1")
    rows = rows[:num_archs]
    scores = [r["oneshot_acc"] for r in rows]
    buckets = bucket_index(scores, num_buckets)
    chosen = bucket_sample(scores, num_buckets, per_bucket, random.Random(seed), rule="width")
    out = Path(out_dir)
    lists = []
    for b in sorted({buckets[i] for i in chosen}):
        archs = [arch_of(rows[i], space) for i in chosen if buckets[i] == b]
        # the file prefix becomes the run's `group` in result.json (bucket<b>)
        lists.append(write_selection(out / "archs", f"bucket{b}", archs))
    picks_txt = out / "picks.txt"
    write_text(picks_txt, "".join(p.read_text() for p in lists))
    picks = {
        "store": str(Path(store).resolve()),
        "dropout_rate": sampler_spec(hparams).get("rate") if hparams else None,
        "dropout_schedule": sampler_spec(hparams).get("schedule") if hparams else None,
        "num_buckets": num_buckets,
        "per_bucket": per_bucket,
        "seed": seed,
        "num_archs": len(rows),
        "archs": [
            {"arch_id": rows[i]["arch_id"], "bucket": buckets[i], "oneshot_acc": scores[i]}
            for i in chosen
        ],
    }
    write_json(out / "picks.json", picks)
    return {"picks": str(out / "picks.json"), "list": str(picks_txt), "count": len(chosen)}


def correlation_study(picks: str, runs: list[str], out_dir: str, metric: str = "test_acc") -> dict:
    """Plot one-shot vs stand-alone accuracy of the retrained picks; write the correlations."""
    check(
        bool(runs),
        "study.runs is empty; pass the retraining sweep's directory, e.g. study.runs=[multirun/...]",
    )
    chosen = read_json(picks, "study=correlation_pick")
    results, _ = runs_by_arch(runs, metric=metric)
    archs = []
    for pick in chosen["archs"]:
        values = results.get(pick["arch_id"])
        if values:  # unfinished retraining is left out (and counted below), not an error
            mean, std = mean_std(values)
            archs.append({**pick, "standalone_mean": mean, "standalone_std": std, "runs": values})
    check(
        len(archs) >= 2,
        f"only {len(archs)} picked architecture(s) have finished stand-alone runs under {runs}; "
        "the correlation needs at least 2",
    )
    x = [a["oneshot_acc"] for a in archs]
    y = [a["standalone_mean"] for a in archs]
    stats = rank_correlations(x, y)
    out = Path(out_dir)
    # A single finished run has no spread (std None, null in the JSON): no error bar to draw.
    errors = [a["standalone_std"] or 0.0 for a in archs]
    figure = plot_correlation(x, y, out / "correlation.png", stats=stats, errors=errors)
    numbers = {
        "metric": metric,
        "dropout_rate": chosen.get("dropout_rate"),
        "dropout_schedule": chosen.get("dropout_schedule"),
        "picked": len(chosen["archs"]),
        "retrained": len(archs),
        "stats": stats,
        "archs": archs,
    }
    write_json(out / "correlation.json", numbers)
    return {"figure": str(figure), "numbers": str(out / "correlation.json"), "stats": stats}
