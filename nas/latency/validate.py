"""Validating a latency table: predicted against measured end-to-end latency of random children."""

from __future__ import annotations

import random
import statistics

import numpy as np
import torch
from scipy import stats

from nas.errors import check
from nas.latency.table import LatencyTable
from nas.latency.timing import Clock, clock_for, measure_networks


def validate(
    table: LatencyTable,
    num: int = 20,
    seed: int = 1,
    warmup: int | None = None,
    repeats: int | None = None,
    clock: Clock | None = None,
) -> dict:
    """Measure `num` distinct random children of the table's network end to end, as the table was
    measured (device, threads, batch size, warm-up, repeats unless given); compare with prediction.

    Returns Pearson r and Spearman ρ of predicted vs measured, the mean relative error
    mean(|predicted - measured| / measured), and one row per child.
    """
    check(
        isinstance(num, int) and num >= 3,
        f"--num={num!r} must be an integer >= 3 (correlations need a few children; use >= 20)",
    )
    device = table.info.get("device", "cpu")
    clock = clock or clock_for(device)
    threads = table.info.get("threads")
    if device == "cpu" and isinstance(threads, int) and threads != torch.get_num_threads():
        torch.set_num_threads(threads)  # the table's times are for this many threads
    warmup = table.info.get("warmup", 10) if warmup is None else warmup
    repeats = table.info.get("repeats", 30) if repeats is None else repeats
    space, rng = table.space(), random.Random(seed)
    check(
        num <= space.count(),
        f"--num={num} exceeds the {space.count()} architectures of space {space.name!r}",
    )
    archs = {}
    while len(archs) < num:
        arch = space.sample(rng)
        archs.setdefault(arch.id, arch)
    shape = (table.batch_size, *table.input_shape)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
    children = [space.build_child(a, **table.network).to(device).eval() for a in archs.values()]
    times = measure_networks(children, x, clock, warmup, repeats)
    rows = [
        {"arch_id": arch.id, "predicted_ms": table.predict(arch), "measured_ms": seconds * 1e3}
        for arch, seconds in zip(archs.values(), times, strict=True)
    ]
    predicted = np.array([r["predicted_ms"] for r in rows])
    measured = np.array([r["measured_ms"] for r in rows])
    return {
        "pearson": _correlation(stats.pearsonr, predicted, measured),
        "spearman": _correlation(stats.spearmanr, predicted, measured),
        "mean_relative_error": float(np.mean(np.abs(predicted - measured) / measured)),
        "median_measured_ms": statistics.median(measured.tolist()),
        "num": num,
        "rows": rows,
    }


def _correlation(fn, a: np.ndarray, b: np.ndarray) -> float:
    """The statistic, or nan when either side is constant (no ranking to compare)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(fn(a, b)[0])
