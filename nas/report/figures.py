"""The paper's figures as small PNGs: one function per figure, data in, path out.

Figures are drawn on the Agg canvas through matplotlib's object API (`Figure` + `FigureCanvasAgg`),
not through pyplot: that needs no display, registers no global figure that could leak, and leaves
the process-wide backend alone for users who import this in a notebook. Single plots are 600x450 px
(6 x 4.5 in at 100 dpi); `plot_dropout_panels` is 300 px wide per panel (at least 600) by 450 px.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nas.errors import check
from nas.plotting import SIZE_IN, new_figure, same_length, save_png, vector
from nas.report.stats import rank_correlations


def _stats_text(x: np.ndarray, y: np.ndarray, stats: Mapping[str, float] | None) -> str:
    """'Kendall tau = .., Spearman rho = .., Pearson r = ..' from `stats` or computed from x, y."""
    if stats is None:
        if x.size < 2:
            return "n < 2: no correlation"
        stats = rank_correlations(x, y)

    def fmt(key: str) -> str:
        value = stats.get(key, math.nan)
        return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"

    return (
        f"Kendall τ = {fmt('kendall_tau')}, Spearman ρ = {fmt('spearman')}, "
        f"Pearson r = {fmt('pearson')}"
    )


def plot_correlation(
    oneshot_acc: Sequence[float],
    standalone_acc: Sequence[float],
    path: str | Path,
    stats: Mapping[str, float] | None = None,
    errors: Sequence[float] | None = None,
) -> Path:
    """Scatter of one-shot vs stand-alone accuracy, optional std error bars (paper Fig. 5, top)."""
    x = vector(oneshot_acc, "oneshot_acc")
    y = vector(standalone_acc, "standalone_acc")
    same_length(x, y, "oneshot_acc and standalone_acc")
    fig = new_figure()
    ax = fig.add_subplot()
    if errors is not None:
        err = vector(errors, "errors")
        same_length(y, err, "standalone_acc and errors")
        check(bool((err >= 0).all()), "errors are standard deviations and must be >= 0")
        ax.errorbar(x, y, yerr=err, fmt="o", ms=4, capsize=2, elinewidth=0.8)
    else:
        ax.scatter(x, y, s=16)
    ax.set_xlabel("one-shot accuracy")
    ax.set_ylabel("stand-alone accuracy")
    ax.set_title(_stats_text(x, y, stats), fontsize=9)
    return save_png(fig, path)


def plot_kl_vs_accuracy(
    kl: Sequence[float],
    accuracy: Sequence[float],
    path: str | Path,
    stats: Mapping[str, float] | None = None,
) -> Path:
    """Scatter of symmetrized KL to the all-on model vs one-shot validation accuracy (Fig. 6)."""
    x = vector(kl, "kl")
    y = vector(accuracy, "accuracy")
    same_length(x, y, "kl and accuracy")
    check(bool((x >= 0).all()), "kl values are divergences and must be >= 0")
    fig = new_figure()
    ax = fig.add_subplot()
    ax.scatter(x, y, s=12, alpha=0.7)
    ax.set_xlabel("symmetrized KL divergence to the all-on model (training batch)")
    ax.set_ylabel("one-shot validation accuracy")
    ax.set_title(_stats_text(x, y, stats), fontsize=9)
    return save_png(fig, path)


def plot_dropout_panels(panels: Sequence[Mapping[str, object]], path: str | Path) -> Path:
    """One scatter of one-shot vs stand-alone accuracy per path-dropout rate, side by side (Fig. 4).

    Every panel is a dict with `rate` (the dropout rate r), `oneshot` and `standalone` (equal-length
    accuracy lists); the stand-alone axis is shared so the panels compare directly.
    """
    check(len(panels) >= 1, "plot_dropout_panels needs at least one panel, got none")
    data = []
    for i, panel in enumerate(panels):
        missing = {"rate", "oneshot", "standalone"} - set(panel)
        check(
            not missing,
            f"panel {i} lacks key(s) {sorted(missing)}; each panel needs rate, oneshot, standalone",
        )
        x = vector(panel["oneshot"], f"panels[{i}]['oneshot']")
        y = vector(panel["standalone"], f"panels[{i}]['standalone']")
        same_length(x, y, f"panels[{i}] oneshot and standalone")
        data.append((float(panel["rate"]), x, y))
    fig = new_figure(max(SIZE_IN[0], 3.0 * len(data)), SIZE_IN[1])
    axes = fig.subplots(1, len(data), sharey=True, squeeze=False)[0]
    for ax, (rate, x, y) in zip(axes, data, strict=True):
        ax.scatter(x, y, s=10)
        tau = rank_correlations(x, y)["kendall_tau"] if x.size >= 2 else math.nan
        ax.set_title(f"r = {rate:g}\nτ = {tau:.3f}", fontsize=9)
        ax.set_xlabel("one-shot acc.", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("stand-alone accuracy")
    return save_png(fig, path)


def _legend_order(arch_ids: list[str], final_acc: Mapping[str, float] | None) -> list[str]:
    """`arch_ids` by descending final accuracy (stable for ties), or unchanged without accuracies."""
    if final_acc is None:
        return arch_ids
    missing = [a for a in arch_ids if a not in final_acc]
    check(
        not missing,
        f"final_acc has no accuracy for architecture(s) {missing[:5]}; "
        "give one per curve or pass final_acc=None",
    )
    return sorted(arch_ids, key=lambda a: -float(final_acc[a]))


def plot_kl_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    final_acc: Mapping[str, float] | None = None,
) -> Path:
    """Symmetrized KL over training, one line per architecture (paper Fig. 7).

    With `final_acc` the legend lists architectures from highest to lowest final one-shot accuracy
    (the paper's finding is that this mirrors the final order of the KL curves); without it the
    order of `curves` is kept.
    """
    check(len(curves) >= 1, "plot_kl_curves needs at least one curve, got none")
    order = _legend_order(list(curves), final_acc)
    fig = new_figure()
    ax = fig.add_subplot()
    for arch in order:
        steps, values = curves[arch]
        s = vector(steps, f"steps of {arch!r}")
        v = vector(values, f"KL values of {arch!r}")
        same_length(s, v, f"steps and values of {arch!r}")
        label = str(arch) if final_acc is None else f"{arch} (acc {float(final_acc[arch]):.3f})"
        ax.plot(s, v, label=label, linewidth=1.2)
    ax.set_xlabel("training step")
    ax.set_ylabel("symmetrized KL to the all-on model")
    ax.legend(fontsize=7, title="by final one-shot acc." if final_acc is not None else None)
    return save_png(fig, path)
