"""Rank correlation of one-shot vs stand-alone accuracy, and the bucketed sample of the study.

The paper's correlation study (Fig. 5) splits architectures into buckets by one-shot accuracy,
retrains a few from every bucket stand-alone, and reports Kendall tau / Spearman / Pearson
between the two accuracies.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from nas.errors import check

_NAMES = ("kendall_tau", "spearman", "pearson")


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
        for name in _NAMES:
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


def bucket_index(scores: Sequence[float], num_buckets: int) -> list[int]:
    """Bucket (0..num_buckets-1) of every score for equal-width buckets over [min, max] of `scores`.

    Bucket b holds scores in [lo + b*w, lo + (b+1)*w) with w = (max - min) / num_buckets; the
    maximum belongs to the last bucket. Constant scores all fall into bucket 0.
    """
    check(
        isinstance(num_buckets, int) and num_buckets >= 1,
        f"num_buckets must be an integer >= 1, got {num_buckets!r}",
    )
    arr = _as_finite_vector(scores, "scores")
    if arr.size == 0:
        return []
    lo, hi = float(arr.min()), float(arr.max())
    if hi == lo:
        return [0] * arr.size
    width = (hi - lo) / num_buckets
    return [min(int((s - lo) / width), num_buckets - 1) for s in arr.tolist()]


def bucket_sample(
    scores: Sequence[float], num_buckets: int, per_bucket: int, rng: random.Random
) -> list[int]:
    """Indices of up to `per_bucket` scores sampled without replacement from each bucket.

    Buckets are the equal-width ones of `bucket_index`; the result lists bucket 0 (lowest scores)
    first and is sorted by index within a bucket. Buckets with fewer members give all of them. The
    same seeded `rng` gives the same sample.
    """
    check(
        isinstance(per_bucket, int) and per_bucket >= 0,
        f"per_bucket must be an integer >= 0, got {per_bucket!r}",
    )
    check(
        isinstance(rng, random.Random),
        f"rng must be a random.Random, got {type(rng).__name__}; pass random.Random(seed)",
    )
    buckets = bucket_index(scores, num_buckets)  # validates num_buckets and scores first
    members: list[list[int]] = [[] for _ in range(num_buckets)]
    for i, b in enumerate(buckets):
        members[b].append(i)
    chosen: list[int] = []
    for group in members:
        chosen.extend(sorted(rng.sample(group, min(per_bucket, len(group)))))
    return chosen
