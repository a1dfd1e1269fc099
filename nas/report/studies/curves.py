"""KL over training (paper Fig. 7): the `OneShotPanel` callback's curves, redrawn without a logger.

Reads `<run>/analysis/kl_curves.json`; the legend orders the panel by final one-shot accuracy,
and the numbers record how well the final KL order mirrors it (Kendall tau of KL vs accuracy;
the paper's finding is a negative relation: low KL, high accuracy).
"""

from __future__ import annotations

from pathlib import Path

from nas.errors import check
from nas.report.figures import plot_kl_curves
from nas.report.stats import rank_correlations
from nas.report.studies.common import read_json, write_json


def kl_curves_study(run: str, out_dir: str, curves: str | None = None) -> dict:
    """Plot the panel's KL curves with final one-shot accuracies; write the final values."""
    path = Path(curves) if curves else Path(str(run)) / "analysis" / "kl_curves.json"
    data = read_json(path, "train.py with callbacks=analysis (the OneShotPanel callback)")
    kl_curves, final = {}, {}
    for arch_id, curve in data.items():
        points = [(s, k) for s, k in zip(curve["steps"], curve["kl"], strict=True) if k is not None]
        check(
            bool(points),
            f"{path}: architecture {arch_id} has no KL values; train with kl_examples > 0",
        )
        kl_curves[arch_id] = ([s for s, _ in points], [k for _, k in points])
        accs = [a for a in curve["acc"] if a is not None]
        final[arch_id] = {
            "final_step": points[-1][0],
            "final_kl": points[-1][1],
            "max_kl": max(k for _, k in points),
            "final_acc": accs[-1] if accs else None,
        }
    have_acc = all(v["final_acc"] is not None for v in final.values())
    out = Path(out_dir)
    figure = plot_kl_curves(
        kl_curves,
        out / "kl_curves.png",
        final_acc={k: v["final_acc"] for k, v in final.items()} if have_acc else None,
    )
    stats = None
    if have_acc and len(final) >= 2:
        ids = list(final)
        stats = rank_correlations(
            [final[i]["final_kl"] for i in ids], [final[i]["final_acc"] for i in ids]
        )
    write_json(out / "kl_curves.json", {"curves": str(path.resolve()), "stats": stats, **final})
    return {"figure": str(figure), "numbers": str(out / "kl_curves.json"), "stats": stats}
