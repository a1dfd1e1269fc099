"""How well one-shot scores rank architectures against their true accuracy, with uncertainty.

Every statistic compares two paired vectors, `oneshot` (the supernet's score of each architecture)
and `truth` (stand-alone accuracy, or a benchmark's): Kendall's τ-b, Spearman's ρ and Pearson's r,
each with a percentile bootstrap confidence interval (pairs resampled with replacement); and, for
the top of the ranking, with k architectures chosen by one-shot score:
- overlap@k: how many of them are among the k best by truth;
- precision@k: overlap@k / k;
- regret@k: best truth overall minus the best truth among them (0: the search found the best).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from nas.analysis.correlation import rank_correlations
from nas.errors import check

STATISTICS = ("kendall_tau", "spearman", "pearson")


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


def ranking_quality(
    oneshot: Sequence[float],
    truth: Sequence[float],
    ks: Sequence[int] = (1, 5, 10),
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
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
    return out
