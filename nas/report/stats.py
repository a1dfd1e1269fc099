"""The statistics of the reports: rank correlations, bucketed samples, spreads, ranking quality.

The paper's correlation study (Fig. 5) splits architectures into buckets by one-shot accuracy,
retrains a few from every bucket stand-alone, and reports Kendall tau / Spearman / Pearson
between the two accuracies (`rank_correlations`, `bucket_index`, `bucket_sample`).

The ranking-quality report compares two paired vectors, `oneshot` (the supernet's score of each
architecture) and `truth` (stand-alone accuracy, or a benchmark's): Kendall's τ-b, Spearman's ρ and
Pearson's r, each with a percentile bootstrap confidence interval (pairs resampled with
replacement); and, for the top of the ranking, with k architectures chosen by one-shot score:
- overlap@k: how many of them are among the k best by truth;
- precision@k: overlap@k / k;
- regret@k: best truth overall minus the best truth among them (0: the search found the best).

Ning et al. ("Evaluating Efficient Performance Estimators of Neural Architectures", NeurIPS 2021)
judge the ends of a ranking by fractions K% of the n architectures (`percent_criteria`): with the
top (bottom) K% by score chosen,
- P@top K% (P@bottom K%): the fraction of them that are in the top (bottom) K% by truth;
- BR@K% / WR@K%: the best / worst true rank among the chosen top K%, as a fraction of n
  (1/n: the best architecture; lower is better).
"""

from __future__ import annotations

import math
import random
import statistics as pystats
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from nas.errors import check

STATISTICS = ("kendall_tau", "spearman", "pearson")
BUCKET_RULES = ("width", "quantile")


def _as_finite_vector(values: Sequence[float], name: str) -> np.ndarray:
    """`values` as a 1-D float64 array, rejecting NaN/Inf with a clear message."""
    arr = np.asarray(values, dtype=np.float64)
    check(arr.ndim == 1, f"{name} must be a flat sequence of numbers, got shape {arr.shape}")
    check(
        bool(np.isfinite(arr).all()),
        f"{name} contains NaN or Inf at positions "
        f"{np.flatnonzero(~np.isfinite(arr))[:5].tolist()}; "
        "drop unfinished or failed runs before correlating",
    )
    return arr


def rank_correlations(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Kendall tau-b, Spearman rho and Pearson r of `x` vs `y`, with their two-sided p-values.

    Returns keys `kendall_tau`, `kendall_p`, `spearman`, `spearman_p`, `pearson`, `pearson_p` and
    `n`. Kendall's is tau-b (ties accounted for). Fewer than 2 pairs is a `NasError`. If `x` or `y`
    is constant the correlations are undefined and every value except `n` is NaN (returned without
    calling scipy, so no warning is emitted). With n = 2 scipy gives +-1 and p-values of 1 or NaN.
    """
    xs = _as_finite_vector(x, "x")
    ys = _as_finite_vector(y, "y")
    check(
        xs.shape == ys.shape,
        f"x and y must have the same length, got {xs.size} and {ys.size}; "
        "pair every one-shot accuracy with its stand-alone accuracy",
    )
    check(
        xs.size >= 2,
        f"rank correlations need at least 2 pairs, got {xs.size}; evaluate more architectures",
    )
    out: dict[str, float] = {"n": float(xs.size)}
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        for name in STATISTICS:
            out[name] = math.nan
            out[name.split("_")[0] + "_p"] = math.nan
        return out
    tau = sps.kendalltau(xs, ys)  # tau-b: ties in either variable are accounted for
    rho = sps.spearmanr(xs, ys)
    r = sps.pearsonr(xs, ys)
    out.update(
        kendall_tau=float(tau.statistic),
        kendall_p=float(tau.pvalue),
        spearman=float(rho.statistic),
        spearman_p=float(rho.pvalue),
        pearson=float(r.statistic),
        pearson_p=float(r.pvalue),
    )
    return out


def _check_num_buckets(num_buckets: int) -> None:
    check(
        isinstance(num_buckets, int) and num_buckets >= 1,
        f"num_buckets must be an integer >= 1, got {num_buckets!r}",
    )


def bucket_index(scores: Sequence[float], num_buckets: int) -> list[int]:
    """Bucket (0..num_buckets-1) of every score for equal-width buckets over [min, max] of `scores`.

    Bucket b holds scores in [lo + b*w, lo + (b+1)*w) with w = (max - min) / num_buckets; the
    maximum belongs to the last bucket. Constant scores all fall into bucket 0.
    """
    _check_num_buckets(num_buckets)
    arr = _as_finite_vector(scores, "scores")
    if arr.size == 0:
        return []
    lo, hi = float(arr.min()), float(arr.max())
    if hi == lo:
        return [0] * arr.size
    width = (hi - lo) / num_buckets
    return [min(int((s - lo) / width), num_buckets - 1) for s in arr.tolist()]


def bucket_sample(
    scores: Sequence[float],
    num_buckets: int,
    per_bucket: int | Sequence[int],
    rng: random.Random,
    rule: str = "width",
    sort: bool = True,
) -> list[int]:
    """Indices of up to `per_bucket` scores sampled without replacement from each bucket.

    `rule` says how the scores are cut into `num_buckets` buckets, bucket 0 holding the lowest:
    - "width" (the paper's Fig. 5 protocol, `correlation_pick`): the equal-width buckets over
      [min, max] of `bucket_index`; skewed scores leave some buckets with few members, or none;
    - "quantile" (the stratified selection `nas.report.quality.sample` and the method comparison):
      equal-count buckets of the ranking. With the scores in ascending order (stable: ties keep
      their index order), position p of N falls into bucket p * num_buckets // N, so every part of
      the ranking is represented however skewed the scores.

    `per_bucket` is one count for every bucket, or one count per bucket (bucket 0 first); buckets
    with fewer members give all of them. The draws go bucket by bucket (bucket 0 first), each from
    the bucket's members in the order above (index order for "width", ascending score for
    "quantile"), so the same seeded `rng` gives the same sample. The result lists bucket 0 first;
    within a bucket it is sorted by index with `sort`, in the order drawn without it.
    """
    check(rule in BUCKET_RULES, f"rule={rule!r} is unknown; choose one of {list(BUCKET_RULES)}")
    _check_num_buckets(num_buckets)
    counts = [per_bucket] * num_buckets if isinstance(per_bucket, int) else list(per_bucket)
    check(
        len(counts) == num_buckets and all(isinstance(c, int) and c >= 0 for c in counts),
        f"per_bucket must be an integer >= 0 (or one per bucket), got {per_bucket!r}",
    )
    check(
        isinstance(rng, random.Random),
        f"rng must be a random.Random, got {type(rng).__name__}; pass random.Random(seed)",
    )
    if rule == "width":
        members: list[list[int]] = [[] for _ in range(num_buckets)]
        for i, b in enumerate(bucket_index(scores, num_buckets)):  # validates the scores
            members[b].append(i)
    else:
        values = _as_finite_vector(scores, "scores").tolist()
        order = sorted(range(len(values)), key=values.__getitem__)  # stable: ties by index
        n = len(order)
        members = [
            order[b * n // num_buckets : (b + 1) * n // num_buckets] for b in range(num_buckets)
        ]
    chosen: list[int] = []
    for group, count in zip(members, counts, strict=True):
        drawn = rng.sample(group, min(count, len(group)))
        chosen.extend(sorted(drawn) if sort else drawn)
    return chosen


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample std (None for a single value, where the sample std is undefined)."""
    return pystats.fmean(values), (pystats.stdev(values) if len(values) > 1 else None)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of every row pair of x, y [B, n] (NaN where a row is constant)."""
    xc = x - x.mean(1, keepdims=True)
    yc = y - y.mean(1, keepdims=True)
    denom = np.sqrt((xc**2).sum(1) * (yc**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (xc * yc).sum(1) / denom, np.nan)


def bootstrap_statistics(
    oneshot: Sequence[float],
    truth: Sequence[float],
    resamples: int = 2000,
    seed: int = 0,
    statistics: Sequence[str] = STATISTICS,
) -> dict[str, np.ndarray]:
    """`statistics` on `resamples` bootstrap resamples of the pairs (NaN where undefined)."""
    x, y = np.asarray(oneshot, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(x), size=(resamples, len(x)))
    xs, ys = x[index], y[index]
    out = {}
    if "pearson" in statistics:
        out["pearson"] = _pearson_rows(xs, ys)
    if "spearman" in statistics:  # Pearson of the ranks, all resamples at once
        out["spearman"] = _pearson_rows(sps.rankdata(xs, axis=1), sps.rankdata(ys, axis=1))
    if "kendall_tau" in statistics:  # scipy's O(n log n) tau-b, one resample at a time
        out["kendall_tau"] = np.array(
            [
                sps.kendalltau(a, b).statistic if np.ptp(a) and np.ptp(b) else np.nan
                for a, b in zip(xs, ys, strict=True)
            ]
        )
    return out


def top_k(oneshot: Sequence[float], truth: Sequence[float], k: int) -> dict[str, float]:
    """overlap@k, precision@k and regret@k (module docstring); ties broken by position."""
    x, y = np.asarray(oneshot, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    k = min(k, len(x))
    chosen = np.argsort(-x, kind="stable")[:k]
    best = set(np.argsort(-y, kind="stable")[:k].tolist())
    overlap = len(best.intersection(chosen.tolist()))
    return {
        "overlap": overlap,
        "precision": overlap / k,
        "regret": float(y.max() - y[chosen].max()),
    }


def percent_criteria(
    oneshot: Sequence[float], truth: Sequence[float], percent: float
) -> dict[str, float | int]:
    """Ning et al.'s P@top/bottom K%, BR@K% and WR@K% (module docstring) for K = `percent`;
    `count` architectures (K% of n, at least 1) at each end; ties broken by position."""
    check(0 < percent <= 100, f"percent={percent!r} must lie in (0, 100], e.g. 10")
    x, y = np.asarray(oneshot, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    n = len(x)
    count = max(1, round(n * percent / 100))
    by_score, by_truth = np.argsort(-x, kind="stable"), np.argsort(-y, kind="stable")
    true_rank = np.empty(n, dtype=np.int64)
    true_rank[by_truth] = np.arange(1, n + 1)  # 1: the best by truth
    top, bottom = by_score[:count], by_score[n - count :]
    return {
        "count": count,
        "precision_top": len(set(top.tolist()) & set(by_truth[:count].tolist())) / count,
        "precision_bottom": len(set(bottom.tolist()) & set(by_truth[n - count :].tolist())) / count,
        "best_rank": float(true_rank[top].min() / n),
        "worst_rank": float(true_rank[top].max() / n),
    }


def ranking_quality(
    oneshot: Sequence[float],
    truth: Sequence[float],
    ks: Sequence[int] = (1, 5, 10),
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    percents: Sequence[float] = (10, 50),
) -> dict:
    """Every statistic of the module docstring, with `level` bootstrap intervals, as one dict."""
    check(0 < level < 1, f"level={level!r} must lie in (0, 1), e.g. 0.95")
    check(
        isinstance(resamples, int) and resamples >= 100, f"resamples={resamples!r} must be >= 100"
    )
    point = rank_correlations(oneshot, truth)  # validates: finite, paired, n >= 2
    boot = bootstrap_statistics(oneshot, truth, resamples, seed)
    tail = 100 * (1 - level) / 2
    out: dict = {"n": int(point["n"]), "level": level, "resamples": resamples}
    for name in STATISTICS:
        values = boot[name][np.isfinite(boot[name])]
        low, high = (
            (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
            if len(values)
            else (math.nan, math.nan)
        )
        out[name] = {"value": point[name], "low": low, "high": high}
    out["top"] = {int(k): top_k(oneshot, truth, int(k)) for k in ks if int(k) <= out["n"]}
    out["percent"] = {f"{p:g}": percent_criteria(oneshot, truth, p) for p in percents}
    return out
