"""BayesNAS's figure: the relevance γ of every switch, with the pruning threshold."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from nas.plotting import SIZE_IN, new_figure, save_png, vector


def plot_gamma(gamma: Mapping[tuple, float], tau: float, path: str | Path) -> Path:
    """BayesNAS relevance: γ of every switch (log scale), edges and ops, with the pruning bar."""
    keys = list(gamma)
    values = vector([gamma[k] for k in keys], "gamma")
    edge = np.array([k[1] is None for k in keys])
    fig = new_figure(max(SIZE_IN[0], 0.12 * len(keys)), SIZE_IN[1])
    ax = fig.add_subplot()
    floor = max(values[values > 0].min() if (values > 0).any() else 1e-12, 1e-12) / 10
    shown = np.maximum(values, floor)
    ax.bar(np.flatnonzero(~edge), shown[~edge], color="tab:blue", label="op switch")
    if edge.any():
        ax.bar(np.flatnonzero(edge), shown[edge], color="tab:orange", label="edge switch")
    for kind, color in ((~edge, "tab:blue"), (edge, "tab:orange")):
        if kind.any():
            ax.axhline(tau * values[kind].max(), color=color, linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{d} {o or '(edge)'}" for d, o in keys], rotation=90, fontsize=5)
    ax.set_ylabel("γ (prior variance after the hierarchy)")
    ax.set_title(f"BayesNAS relevance; dashed: pruning bar τ·max (τ = {tau:g})", fontsize=10)
    ax.legend(fontsize=8)
    return save_png(fig, path)
