"""Figures as PNGs on the Agg canvas: the drawing helpers every figure of the project shares.

Figures are drawn through matplotlib's object API (`Figure` + `FigureCanvasAgg`), not through
pyplot: that needs no display, registers no global figure that could leak, and leaves the
process-wide backend alone for users who import this in a notebook. Single plots are 600x450 px
(6 x 4.5 in at 100 dpi).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nas.atomic import atomic_path
from nas.errors import check

DPI = 100
SIZE_IN = (6.0, 4.5)  # inches; 600 x 450 px at DPI


def vector(values: Sequence[float], name: str, min_len: int = 1) -> np.ndarray:
    """`values` as a finite 1-D float array of at least `min_len` entries."""
    arr = np.asarray(values, dtype=np.float64)
    check(arr.ndim == 1, f"{name} must be a flat sequence of numbers, got shape {arr.shape}")
    check(arr.size >= min_len, f"{name} needs at least {min_len} value(s), got {arr.size}")
    check(
        bool(np.isfinite(arr).all()),
        f"{name} contains NaN or Inf; drop failed or unfinished runs before plotting",
    )
    return arr


def same_length(a: np.ndarray, b: np.ndarray, names: str) -> None:
    check(a.shape == b.shape, f"{names} must have the same length, got {a.size} and {b.size}")


def new_figure(width_in: float = SIZE_IN[0], height_in: float = SIZE_IN[1]) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG to `path` (creating its folder), release it and return the path."""
    out = Path(path)
    check(
        out.suffix.lower() == ".png",
        f"figure path must end in .png, got {str(out)!r}; these figures are written as PNG",
    )
    # No bbox_inches="tight": it would change the pixel size away from the documented one.
    # Drawn to a temporary file, then renamed: a failure keeps the previous figure whole.
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    fig.clear()  # drop the artists now rather than at garbage collection
    return out
